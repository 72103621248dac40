"""Distributed runs on the CPU: gloo, DDP without device ids, CPUSyncBN, 1 vs 2 processes.

They run on GPU machines too: in this process the CPU path is chosen by making
``torch.cuda.is_available`` answer False, and the tools' subprocesses see no GPU
(``CUDA_VISIBLE_DEVICES=''``).
"""

import copy
import json
import os
import re
import socket
import subprocess
import sys
import warnings

import pytest
import torch
import torch.distributed as dist
from helpers import randomize_
from tiny import DEEPLABV3, REPO, as_cli, tiny_segmentation_options

from resnest_mm.apis import build_test_config, load_config, setup_cpu_distributed
from resnest_mm.apis.distributed import CPU_SYNC_BN, replace_sync_bn
from resnest_mm.datasets import make_ade20k


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _cpu_only_env() -> dict:
    """Environment for a tool's processes: no GPU visible, a free port, one thread each, and
    this test's interpreter for tools/dist_run.sh (the torch 2.1 venv's under make test-compat)."""
    return dict(os.environ, CUDA_VISIBLE_DEVICES='', PORT=str(_free_port()), OMP_NUM_THREADS='1',
                PYTHON=sys.executable)


def _last_metrics(work_dir) -> dict:
    logs = list(work_dir.glob('*/*.json'))
    assert len(logs) == 1, logs
    return json.loads(logs[0].read_text().splitlines()[-1])


@pytest.mark.parametrize('script, usage', [
    ('dist_train.sh', 'CONFIG GPUS [train.py args]'),
    ('dist_test.sh', 'CONFIG CHECKPOINT GPUS [test.py args]'),
])
def test_dist_scripts_print_their_usage_when_arguments_are_missing(script, usage):
    run = subprocess.run(['bash', str(REPO / 'tools' / script), 'only_a_config.py'],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and 'usage: ' in run.stderr and usage in run.stderr


def test_dist_train_reports_a_users_mistake_in_one_line_without_the_launchers_traceback(
        tmp_path):
    """Every worker stops with one line; the launcher adds one line naming the first failed
    rank and its status, and exits with that status (torchrun alone printed a 40-line
    traceback)."""
    run = subprocess.run(
        ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(tmp_path / 'missing.py'), '2'],
        capture_output=True, text=True, env=_cpu_only_env(), timeout=300, cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr and 'ChildFailedError' not in run.stderr, run.stderr
    assert run.stderr.count("train.py: error: config file ") == 2, run.stderr
    assert re.fullmatch(r'dist_run: rank [01] stopped the run, with status 1; its output is above',
                        run.stderr.strip().splitlines()[-1]), run.stderr


@pytest.mark.parametrize('ending, status', [
    ('sys.exit(75 if rank == 1 else 0)', 75),  # preempted and saved: requeue
    ('sys.exit(74 if rank == 0 else 0)', 74),  # a save failed: do not requeue
    ('os.kill(os.getpid(), signal.SIGKILL) if rank == 1 else time.sleep(30)', 128 + 9),
    ('sys.exit(0)', 0),
])
def test_launcher_exits_with_the_status_of_the_first_failed_worker(tmp_path, ending, status):
    """resnest_mm.apis.launch.torchrun (what tools/dist_run.sh runs) over real torchrun: the
    status of the worker that stopped the run (128 + N for a signal), where torchrun says 1."""
    script = tmp_path / 'worker.py'
    script.write_text('import os, signal, sys, time\n'
                      "rank = int(os.environ['RANK'])\n" + ending + '\n')
    launcher = ('import sys; from resnest_mm.apis.launch import torchrun; '
                'sys.exit(torchrun(sys.argv[1:]))')
    env = dict(_cpu_only_env(), PYTHONPATH=str(REPO))
    args = ['--nproc_per_node=2', f'--master_port={env["PORT"]}', str(script)]
    run = subprocess.run([sys.executable, '-c', launcher, *args], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == status, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr, run.stderr
    if status:
        line = run.stderr.strip().splitlines()[-1]
        assert line.startswith('dist_run: rank ') and f'status {status}' in line, line
        plain = subprocess.run([sys.executable, '-m', 'torch.distributed.run', *args],
                               capture_output=True, text=True, env=env, timeout=300)
        assert plain.returncode == 1  # what torchrun alone says, whatever the workers said


@pytest.mark.parametrize('exitcodes, expected', [
    ({0: 1, 1: -9}, 1),   # a peer killed (-9); rank 0 lost its connection (1) in the same second
    ({0: 74, 1: -15}, 0),  # rank 0's save failed; torchrun stopped rank 1 with SIGTERM
    ({0: 1, 1: 75}, 1),    # preempted and saved; a peer then saw the connection close
    ({0: -25, 1: 1}, 0),   # the writer hit the file-size limit
    ({0: 1, 1: 1}, 0),     # the same failure everywhere: the lowest rank
])
def test_the_rank_that_stopped_the_run_is_the_cause_not_a_consequence(exitcodes, expected):
    """torch's own ``get_first_failure`` compares times recorded to the second, so a rank
    that only lost its connection to a killed peer could be named (seen with torch 2.1)."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from resnest_mm.apis.launch import root_failure

    failures = {rank: ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=code,
                                     error_file='<N/A>') for rank, code in exitcodes.items()}
    for failure in failures.values():
        failure.timestamp = 1_700_000_000  # the same second
    assert root_failure(failures)[0] == expected


def test_replace_sync_bn_counts_and_replaces_nested_norms():
    cfg = dict(backbone=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
               heads=[dict(norm_cfg=dict(type='SyncBN')), dict(norm_cfg=dict(type='GN'))])
    assert replace_sync_bn(cfg) == 2
    assert cfg['backbone']['norm_cfg'] == dict(type='resnest_mm.CPUSyncBN', requires_grad=True)
    assert cfg['heads'][0]['norm_cfg']['type'] == 'resnest_mm.CPUSyncBN'
    assert cfg['heads'][1]['norm_cfg']['type'] == 'GN'


def test_setup_cpu_distributed_leaves_gpu_runs_to_mmengine(tmp_path, monkeypatch):
    cfg = load_config(DEEPLABV3)
    cfg.work_dir = str(tmp_path)
    before = copy.deepcopy(cfg.to_dict())
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert setup_cpu_distributed(cfg, 'pytorch') is False
    assert cfg.to_dict() == before and not dist.is_initialized()


def test_setup_cpu_distributed_rewrites_the_config_once(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = load_config(DEEPLABV3)
    cfg.work_dir = str(tmp_path)
    cfg.sync_bn = 'torch'  # mmengine's BN -> torch SyncBN conversion, which needs a GPU
    assert setup_cpu_distributed(cfg, 'none') is False
    assert 'model_wrapper_cfg' not in cfg

    for key, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(_free_port())).items():
        monkeypatch.setenv(key, value)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            assert setup_cpu_distributed(cfg, 'pytorch') is True
        assert dist.get_backend() == 'gloo'
        messages = [str(w.message) for w in caught]
        assert sum('SyncBN runs as resnest_mm.CPUSyncBN' in m for m in messages) == 1
        assert sum("cfg.sync_bn='torch' on the CPU: the model's BatchNorms become "
                   'resnest_mm.CPUSyncBN' in m for m in messages) == 1
        assert 'sync_bn' not in cfg
        assert cfg.model_wrapper_cfg == dict(type='CPUSyncBNDistributedDataParallel',
                                             device_ids=None, convert_sync_bn=True)
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert "'SyncBN'" not in str(cfg.model) and CPU_SYNC_BN in str(cfg.model)
        assert cfg.val_evaluator.collect_dir == str(tmp_path / '.dist_collect')
    finally:
        dist.destroy_process_group()


def test_distributed_tests_write_the_metrics_json_from_the_main_process_only(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    from resnest_mm.engine import hooks

    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    cfg = build_test_config(DEEPLABV3, str(checkpoint), launcher='pytorch')
    assert cfg.default_hooks.logger.type == 'resnest_mm.MainProcessLoggerHook'
    cfg = build_test_config(DEEPLABV3, str(checkpoint))
    assert cfg.default_hooks.logger.type == 'LoggerHook'

    hook = hooks.MainProcessLoggerHook()
    hook.json_log_path = 'metrics.json'
    processor = SimpleNamespace(get_log_after_epoch=lambda *args, **kwargs: ({'mIoU': 1.0}, ''))
    runner = SimpleNamespace(log_processor=processor, test_dataloader=[0], log_dir=str(tmp_path),
                             logger=SimpleNamespace(info=lambda message: None))
    monkeypatch.setattr(hooks, 'is_main_process', lambda: False)
    hook.after_test_epoch(runner, {'mIoU': 1.0})
    assert not (tmp_path / 'metrics.json').exists()
    monkeypatch.setattr(hooks, 'is_main_process', lambda: True)
    hook.after_test_epoch(runner, {'mIoU': 1.0})
    assert json.loads((tmp_path / 'metrics.json').read_text()) == {'mIoU': 1.0}


def test_two_processes_evaluate_exactly_like_one(tmp_path):
    """tools/dist_test.sh with 2 CPU processes vs tools/test.py in one, same data and weights."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    data_root = str(make_ade20k(tmp_path / 'data', num_train=1, num_val=5, seed=3,
                                height=64, width=64)) + '/'
    options = tiny_segmentation_options(data_root)
    cfg = load_config(DEEPLABV3, options)
    register_all_modules(init_default_scope=True)
    model = MODELS.build(cfg.model)
    randomize_(model, seed=4)  # varied predictions, so equal metrics mean equal predictions
    checkpoint = str(tmp_path / 'tiny.pth')
    torch.save({'state_dict': model.state_dict()}, checkpoint)

    one = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'test.py'), str(DEEPLABV3), checkpoint,
         '--work-dir', str(tmp_path / 'one'), *as_cli(options)],
        cwd=tmp_path, env=dict(_cpu_only_env(), PYTHONPATH=str(REPO)), capture_output=True,
        text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    single = _last_metrics(tmp_path / 'one')
    run = subprocess.run(
        ['bash', str(REPO / 'tools' / 'dist_test.sh'), str(DEEPLABV3), checkpoint, '2',
         '--work-dir', str(tmp_path / 'two'), *as_cli(options)],
        cwd=tmp_path, env=_cpu_only_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    double = _last_metrics(tmp_path / 'two')
    metrics = ('aAcc', 'mIoU', 'mAcc')
    assert {k: double[k] for k in metrics} == {k: single[k] for k in metrics}
    assert 0 < single['mIoU'] < 100 and single['aAcc'] > 0
    assert run.stderr.count('SyncBN runs as resnest_mm.CPUSyncBN on the CPU') == 1



@pytest.mark.slow
@pytest.mark.parametrize('sync_bn_from', ['norm_cfg', 'cfg.sync_bn'])
def test_two_processes_train_with_ddp_on_the_cpu(tmp_path, sync_bn_from):
    """tools/dist_train.sh with 2 CPU processes, one image each: gloo, DDP without device ids,
    SyncBN as CPUSyncBN, so no BN (the ASPP's pooled one included) sees a single value. The
    SyncBN comes from the norm configs, or from plain BN configs and ``sync_bn='torch'``."""
    data_root = str(make_ade20k(tmp_path / 'data', num_train=4, num_val=2, seed=3,
                                height=64, width=64)) + '/'
    options = {**tiny_segmentation_options(data_root), 'train_dataloader.batch_size': 1}
    expected = 'SyncBN runs as resnest_mm.CPUSyncBN on the CPU'
    if sync_bn_from == 'cfg.sync_bn':
        for part in ('backbone', 'decode_head', 'auxiliary_head'):
            options[f'model.{part}.norm_cfg.type'] = 'BN'
        options['sync_bn'] = 'torch'
        expected = "cfg.sync_bn='torch' on the CPU: the model's BatchNorms become"
    run = subprocess.run(
        ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(DEEPLABV3), '2',
         '--work-dir', str(tmp_path / 'w'), *as_cli(options)],
        cwd=tmp_path, env=_cpu_only_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / 'w' / 'iter_2.pth').exists()
    assert run.stderr.count(expected) == 1
    assert 'a training batch of one sample' not in run.stderr  # norm.py's fallback
