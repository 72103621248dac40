"""Distributed runs without CUDA: gloo, DDP without device ids, SyncBN as CPUSyncBN.

mmengine 0.10's launchers call ``torch.cuda.set_device`` and default to NCCL, and its Runner
wraps models in DDP with ``device_ids=[local_rank]``; torch's ``SyncBatchNorm`` refuses CPU
tensors, and its DDP refuses CPU models with SyncBatchNorm layers. When CUDA is unavailable,
:func:`setup_cpu_distributed` initialises the process group itself (the Runner then skips its
own CUDA-bound initialisation) and rewrites the config so the Runner builds a CPU-compatible
model, whose SyncBN layers are :class:`~resnest_mm.models.sync_bn.CPUSyncBatchNorm` (batch
statistics still synchronised over the processes, through gloo) in a DDP that accepts them.
With CUDA nothing is changed: mmengine does its usual.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import warnings
from typing import Any

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction

from ..models.sync_bn import replace_norm_types

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
CPU_SYNC_BN = 'resnest_mm.CPUSyncBN'
CPU_DDP = 'CPUSyncBNDistributedDataParallel'  # MMDistributedDataParallel accepting CPUSyncBN
SYNC_BN_WARNING = (
    'SyncBN runs as resnest_mm.CPUSyncBN on the CPU: {count} norm layer config(s) with type '
    "SyncBN synchronise their batch statistics over gloo (torch's SyncBN needs a GPU).")
SYNC_BN_KEY_WARNING = (
    "cfg.sync_bn={value!r} is ignored on the CPU: it converts the BatchNorms to torch's "
    'SyncBN, which needs a GPU, and model_wrapper_cfg type {wrapper!r} cannot convert them to '
    'resnest_mm.CPUSyncBN, so they keep per-process statistics. Use the default wrapper or '
    "norm_cfg=dict(type='resnest_mm.CPUSyncBN') to synchronise them over the processes.")
SYNC_BN_KEY_CONVERTED = (
    "cfg.sync_bn={value!r} on the CPU: the model's BatchNorms become resnest_mm.CPUSyncBN "
    "(synchronised over gloo) instead of torch's SyncBN, which needs a GPU.")


class CfgOptionsAction(DictAction):
    """mmengine's DictAction that reports an item without ``=`` as a usage error (mmengine
    0.10 raises a bare ValueError from inside argparse, a traceback)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values or []:
            if '=' not in item:
                parser.error(f'argument {option_string}: {item!r} is invalid; expected '
                             'KEY=VALUE, e.g. train_cfg.max_iters=100')
        super().__call__(parser, namespace, values, option_string)


def add_run_arguments(parser: argparse.ArgumentParser, data_root_option: str) -> None:
    """The options tools/train.py and tools/test.py share: ``--cfg-options`` (with an example
    overriding ``data_root_option``), ``--launcher`` and the ``--local-rank`` that
    ``torch.distributed.launch`` passes."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        help=f'override config entries, e.g. {data_root_option}=data/coco/')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def check_launcher(launcher: str) -> None:
    """Reject an unknown launcher name with the allowed ones."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher={launcher!r} is invalid; allowed: {", ".join(LAUNCHERS)}')


def _set_env_from_launcher(launcher: str) -> None:
    """Fill torch's env:// variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*) for a launcher."""
    if launcher == 'slurm':
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
        if 'MASTER_ADDR' not in os.environ:
            hosts = subprocess.check_output(
                ['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']], text=True)
            os.environ['MASTER_ADDR'] = hosts.split()[0]
    elif launcher == 'mpi':
        os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
        os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
        os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']
        if 'MASTER_ADDR' not in os.environ:
            raise KeyError('launcher=mpi needs the MASTER_ADDR environment variable')
    os.environ.setdefault('MASTER_PORT', '29500')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR') if k not in os.environ]
    if missing:
        raise KeyError(f'launcher={launcher!r} needs the environment variables {missing}; '
                       'start the processes with torchrun (tools/dist_train.sh, '
                       'tools/dist_test.sh), srun or mpirun')


def replace_sync_bn(node: Any) -> int:
    """Make every SyncBN norm config (:data:`~resnest_mm.models.sync_bn.SYNC_BN_TYPES`)
    ``resnest_mm.CPUSyncBN``, which synchronises over the CPU processes too, in place; returns
    how many changed."""
    return replace_norm_types(node, CPU_SYNC_BN)


def _evaluators(cfg: Config) -> list[dict]:
    evaluators = []
    for key in ('val_evaluator', 'test_evaluator'):
        value = cfg.get(key)
        if isinstance(value, dict) and 'metrics' in value:
            value = value['metrics']
        evaluators += value if isinstance(value, list) else [value] if value else []
    return evaluators


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare a distributed run on the CPU; does nothing with launcher 'none' or with CUDA.

    Initialises a gloo process group from the launcher's environment, sets
    ``model_wrapper_cfg`` to DDP without device ids (``CPUSyncBNDistributedDataParallel`` in
    place of mmengine's default ``MMDistributedDataParallel``), makes SyncBN norm configs
    ``resnest_mm.CPUSyncBN`` (statistics still synchronised, over gloo; one warning, from rank
    0), replaces ``cfg.sync_bn`` (mmengine's conversion to torch's SyncBN would fail on the CPU)
    by the wrapper's conversion to ``CPUSyncBN`` (announced once), and gives each metric a
    result-collection folder under the work dir, which every rank must see (a shared file
    system across nodes).

    Args:
        cfg: the run's config, changed in place; ``cfg.work_dir`` must be set.
        launcher: one of ``LAUNCHERS``.

    Returns:
        Whether the run is distributed on the CPU.
    """
    check_launcher(launcher)
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        _set_env_from_launcher(launcher)
        dist.init_process_group('gloo')
    cfg.launcher = launcher
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type=CPU_DDP))
    if wrapper.get('type') == 'MMDistributedDataParallel':
        wrapper['type'] = CPU_DDP
    wrapper['device_ids'] = None
    sync_bn = cfg.pop('sync_bn', None)
    if sync_bn is not None and wrapper['type'] == CPU_DDP:
        wrapper['convert_sync_bn'] = True
    cfg.model_wrapper_cfg = wrapper
    count = replace_sync_bn(cfg.model)
    if dist.get_rank() == 0:
        if count:
            warnings.warn(SYNC_BN_WARNING.format(count=count), stacklevel=2)
        if sync_bn is not None:
            message = SYNC_BN_KEY_CONVERTED if wrapper['type'] == CPU_DDP else SYNC_BN_KEY_WARNING
            warnings.warn(message.format(value=sync_bn, wrapper=wrapper['type']), stacklevel=2)
    collect_dir = os.path.join(os.path.abspath(cfg.work_dir), '.dist_collect')
    for metric in _evaluators(cfg):
        metric.setdefault('collect_dir', collect_dir)
    return True


def shutdown_distributed() -> None:
    """End a distributed run cleanly: wait for every rank, then destroy the process group.

    A process that exits with a gloo group still alive can abort in the group's threads'
    teardown (``terminate called without an active exception``), failing a finished run.
    Does nothing when no group is initialised.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
