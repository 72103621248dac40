"""CPUSyncBN: BatchNorm statistics synchronised over CPU processes (gloo), BN otherwise.

The two-process test trains one image per process and compares with one process training the
pair with plain BN: outputs, summed gradients and running statistics must agree.
"""

from __future__ import annotations

import copy
import importlib
import socket
import time
import warnings
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import max_abs_diff, randomize_
from mmcv.cnn import build_norm_layer
from mmengine.model import is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS, DefaultScope
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from resnest_mm import ResNeSt
from resnest_mm.apis.distributed import replace_sync_bn
from resnest_mm.models.sync_bn import CPUSyncBatchNorm, CPUSyncBNDistributedDataParallel

SMALL = dict(depth=14, stem_channels=32, base_channels=16)
WORLD = 2
RTOL, ATOL = 1e-4, 1e-5
# The two-process model runs in float64: in float32 the attention's BN over two pooled values
# amplifies rounding so much that float32 and float64 BN already disagree in some gradients.
RTOL64, ATOL64 = 1e-7, 1e-7
FALLBACK = 'a training batch of one sample'  # resnest_mm/models/norm.py's warning


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _init_gloo(rank: int, world_size: int, port: int) -> None:
    # A short timeout: a rank stuck in a collective fails the test instead of hanging it.
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=60))


@pytest.fixture
def gloo_group_of_one():
    _init_gloo(0, 1, _free_port())
    try:
        yield dist.group.WORLD
    finally:
        dist.destroy_process_group()


def _pair(momentum=0.1, **kwargs):
    """A BatchNorm2d and a CPUSyncBatchNorm with the same random parameters and statistics."""
    bn = randomize_(nn.BatchNorm2d(6, momentum=momentum, **kwargs), seed=2)
    sync = CPUSyncBatchNorm(6, momentum=momentum, **kwargs)
    sync.load_state_dict(bn.state_dict())
    return bn, sync


def _step(norm, x, forward=None):
    """Forward and backward of ``sum(out**2)``; returns the output, input grad and grads."""
    x = x.clone().requires_grad_()
    out = (forward or norm)(x)
    out.square().sum().backward()
    grads = tuple(p.grad.clone() for p in norm.parameters())
    norm.zero_grad()
    return out.detach(), x.grad, grads


def _assert_close(a, b, rtol=RTOL, atol=ATOL):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _assert_same_state(a: nn.Module, b: nn.Module, exact: bool = True):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        if exact or key.endswith('num_batches_tracked'):
            assert torch.equal(sa[key], sb[key]), key
        else:
            _assert_close(sa[key], sb[key])


# Single process -----------------------------------------------------------------------------


@pytest.mark.parametrize('momentum', [0.1, None])
def test_without_a_process_group_it_is_batchnorm(momentum):
    assert not dist.is_initialized()
    bn, sync = _pair(momentum)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        x = torch.randn(3, 6, 5, 5, generator=gen)
        for a, b in zip(_step(bn, x), _step(sync, x), strict=True):
            assert max_abs_diff(a, b) == 0
    _assert_same_state(bn, sync)
    bn.eval()
    sync.eval()
    with torch.no_grad():
        assert torch.equal(sync(x), bn(x))


def test_a_process_group_of_one_is_batchnorm_where_torch_syncbn_fails(gloo_group_of_one):
    bn, sync = _pair()
    x = torch.randn(4, 6, 3, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sync(x), bn(x))
    _assert_same_state(bn, sync)
    with pytest.raises(ValueError, match='expected input tensor to be on GPU'):
        nn.SyncBatchNorm(6)(x)


@pytest.mark.parametrize('momentum', [0.1, None])
@pytest.mark.parametrize('kwargs', [{}, dict(affine=False), dict(track_running_stats=False)])
def test_synchronised_path_matches_batchnorm(gloo_group_of_one, momentum, kwargs):
    """The synchronised computation itself (over a group of one) against BatchNorm."""
    bn, sync = _pair(momentum, **kwargs)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        x = torch.randn(3, 6, 4, 4, generator=gen) * 3 + 2
        expected = _step(bn, x)
        got = _step(sync, x, lambda t: sync._forward_synced(t, gloo_group_of_one))
        for a, b in zip(expected, got, strict=True):
            _assert_close(b, a)
    _assert_same_state(bn, sync, exact=False)


def test_synchronised_path_keeps_the_statistics_of_an_empty_batch(gloo_group_of_one):
    bn, sync = _pair()
    x = torch.randn(0, 6, 4, 4)
    expected = _step(bn, x)
    got = _step(sync, x, lambda t: sync._forward_synced(t, gloo_group_of_one))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)  # empty outputs, zero grads
    _assert_same_state(bn, sync)


def test_synchronised_path_refuses_one_value_per_channel_as_torch(gloo_group_of_one):
    x = torch.randn(1, 6, 1, 1)
    with pytest.raises(ValueError) as torch_error:
        nn.BatchNorm2d(6)(x)
    with pytest.raises(ValueError) as ours:
        CPUSyncBatchNorm(6)._forward_synced(x, gloo_group_of_one)
    assert str(ours.value) == str(torch_error.value)


def test_state_dict_keys_equal_batchnorm():
    bn, sync = _pair()
    assert list(sync.state_dict()) == list(bn.state_dict())
    ours = ResNeSt(norm_cfg=dict(type='resnest_mm.CPUSyncBN'), **SMALL)
    plain = ResNeSt(norm_cfg=dict(type='BN'), **SMALL)
    assert list(ours.state_dict()) == list(plain.state_dict())
    assert ours.load_state_dict(plain.state_dict())  # strict


@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg'])
def test_build_norm_layer_names_it_bn_in_every_scope(scope):
    if scope is not None:
        importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        name, layer = build_norm_layer(dict(type='resnest_mm.CPUSyncBN', requires_grad=False),
                                       8, postfix=1)
    assert name == 'bn1'
    assert type(layer) is CPUSyncBatchNorm and isinstance(layer, nn.SyncBatchNorm)
    assert not layer.weight.requires_grad


def test_ddp_wrapper_accepts_cpu_sync_bn_only(gloo_group_of_one):
    model = nn.Sequential(nn.Conv2d(3, 6, 1), CPUSyncBatchNorm(6))
    with pytest.raises(ValueError, match='SyncBatchNorm layers only work with GPU modules'):
        DistributedDataParallel(model)
    importlib.import_module('mmseg.registry')
    with DefaultScope.overwrite_default_scope('mmseg'):
        ddp = MODEL_WRAPPERS.build(
            dict(type='CPUSyncBNDistributedDataParallel', device_ids=None),
            default_args=dict(module=model))
    assert type(ddp) is CPUSyncBNDistributedDataParallel and is_model_wrapper(ddp)
    ddp(torch.randn(2, 3, 4, 4)).square().sum().backward()
    assert model[1].weight.grad is not None
    with pytest.raises(ValueError, match='SyncBatchNorm layers only work with GPU modules'):
        CPUSyncBNDistributedDataParallel(nn.Sequential(nn.SyncBatchNorm(6)), device_ids=None)


def test_cfg_sync_bn_converts_batchnorms_in_the_wrapper(gloo_group_of_one):
    model = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4, momentum=None)))
    randomize_(model)
    model[3][1].weight.requires_grad_(False)
    model[3].eval()
    x = torch.randn(2, 3, 5, 5)
    twin = copy.deepcopy(model)
    expected = twin(x)
    params = list(model.parameters())
    ddp = CPUSyncBNDistributedDataParallel(model, convert_sync_bn=True, device_ids=None)
    norms = [ddp.module[1], ddp.module[3][1]]
    assert all(type(norm) is CPUSyncBatchNorm for norm in norms)
    assert list(ddp.module.parameters()) == params  # the same Parameter objects
    assert norms[1].momentum is None and not norms[1].training
    assert not norms[1].weight.requires_grad
    assert torch.allclose(ddp(x), expected, rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(ddp.module.buffers(), twin.buffers(), strict=True):
        assert torch.allclose(ours.float(), theirs.float())


def test_replace_sync_bn_gives_cpu_sync_bn():
    cfg = dict(backbone=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
               head=dict(norm_cfg=dict(type='MMSyncBN')), neck=[dict(norm_cfg=dict(type='BN'))])
    assert replace_sync_bn(cfg) == 2
    assert cfg['backbone']['norm_cfg'] == dict(type='resnest_mm.CPUSyncBN', requires_grad=True)
    assert cfg['head']['norm_cfg']['type'] == 'resnest_mm.CPUSyncBN'
    assert cfg['neck'][0]['norm_cfg']['type'] == 'BN'
    assert replace_sync_bn(cfg) == 0  # idempotent


def test_one_norm_type_rewriter_serves_builds_runs_and_benchmarks():
    """build.sync_bn_to_bn (one process: BN), apis' replace_sync_bn (CPU processes:
    CPUSyncBN) and the detector benchmark share replace_norm_types and its type list."""
    from resnest_mm.apis import sync_bn_to_bn
    from resnest_mm.models.sync_bn import SYNC_BN_TYPES, replace_norm_types

    cfg = dict(backbone=dict(norm_cfg=dict(type='resnest_mm.CPUSyncBN')),
               heads=(dict(norm_cfg=dict(type='SyncBatchNorm')), dict(type='GN')),
               neck=[dict(norm_cfg=dict(type='MMSyncBN')), dict(norm_cfg=dict(type='SyncBN'))])
    single = sync_bn_to_bn(cfg)
    assert single['backbone']['norm_cfg']['type'] == 'BN'
    assert [h.get('norm_cfg', h)['type'] for h in single['heads']] == ['BN', 'GN']
    assert cfg['backbone']['norm_cfg']['type'] == 'resnest_mm.CPUSyncBN'  # a copy
    assert replace_norm_types(cfg, 'resnest_mm.CPUSyncBN') == 3
    assert replace_norm_types(cfg, 'BN', types=('GN',)) == 1
    assert set(SYNC_BN_TYPES) >= {'SyncBN', 'MMSyncBN', 'SyncBatchNorm', 'resnest_mm.CPUSyncBN'}


# Two processes, one image each --------------------------------------------------------------


def _backbone(norm_type: str) -> ResNeSt:
    model = randomize_(ResNeSt(norm_cfg=dict(type=norm_type), **SMALL), seed=5)
    return model.double().train()


def _images() -> torch.Tensor:
    return torch.randn(WORLD, 3, 48, 48, generator=torch.Generator().manual_seed(1),
                       dtype=torch.float64)


def _train_step(model: nn.Module, x: torch.Tensor) -> dict:
    outs = model(x)
    sum(o.square().sum() for o in outs).backward()
    return dict(
        outs=[o.detach() for o in outs],
        grads={n: p.grad.clone() for n, p in model.named_parameters()},
        buffers={n: b.clone() for n, b in model.named_buffers()})


def _uneven_batches(rank: int) -> dict:
    """A lone CPUSyncBN, rank 0 with no sample and then one, rank 1 with three: statistics are
    weighted by the samples, an empty batch still joins, and a global count of 1 fails."""
    results = {}
    for momentum in (0.1, None):
        norm = CPUSyncBatchNorm(6, momentum=momentum)
        randomize_(norm, seed=2).train()
        gen = torch.Generator().manual_seed(7)
        steps = []
        for lo in (1, 0):
            x = torch.randn(4, 6, 3, 3, generator=gen) * 2 + 1
            part = x[lo:1] if rank == 0 else x[1:]
            steps.append(_step(norm, part))
        results[momentum] = dict(steps=steps, state=norm.state_dict())
    single = torch.randn(1, 6, 1, 1) if rank == 0 else torch.randn(0, 6, 1, 1)
    try:
        CPUSyncBatchNorm(6)(single)
    except ValueError as error:
        results['count_one'] = str(error)
    return results


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    _init_gloo(rank, WORLD, port)
    try:
        model = _backbone('resnest_mm.CPUSyncBN')
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter('always')
            result = _train_step(model, _images()[rank:rank + 1])
        result['warnings'] = [str(r.message) for r in records]
        # DDP's asynchronous gradient all-reduces share the gloo group with CPUSyncBN's.
        ddp = CPUSyncBNDistributedDataParallel(_backbone('resnest_mm.CPUSyncBN'), device_ids=None)
        result['ddp_grads'] = _train_step(ddp, _images()[rank:rank + 1])['grads']
        result['uneven'] = _uneven_batches(rank)
        torch.save(result, f'{out_dir}/rank{rank}.pt')
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawn(out_dir: str, timeout: float = 120.0) -> None:
    """Run ``_worker`` on WORLD processes; a child's exception is raised here with its traceback
    (torch's ProcessRaisedException), and a hang ends at ``timeout``."""
    context = mp.spawn(_worker, args=(_free_port(), out_dir), nprocs=WORLD, join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f'{WORLD} processes did not finish in {timeout} s')


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('sync_bn')
    _spawn(str(out_dir))
    return [torch.load(out_dir / f'rank{r}.pt') for r in range(WORLD)]


@pytest.fixture(scope='module')
def reference():
    return _train_step(_backbone('BN'), _images())


def test_two_processes_with_one_image_each_train_like_one_with_both(ranks, reference):
    outs = [torch.cat(o) for o in zip(*(r['outs'] for r in ranks), strict=True)]
    grads = {n: sum(r['grads'][n] for r in ranks) for n in ranks[0]['grads']}
    tolerances = dict(rtol=RTOL64, atol=ATOL64)
    torch.testing.assert_close(outs, reference['outs'], **tolerances)
    torch.testing.assert_close(grads, reference['grads'], **tolerances)
    for rank in ranks:
        torch.testing.assert_close(rank['buffers'], reference['buffers'], **tolerances)
        # DDP averages the gradients over the processes.
        ddp_grads = {n.removeprefix('module.'): g * WORLD for n, g in rank['ddp_grads'].items()}
        torch.testing.assert_close(ddp_grads, reference['grads'], **tolerances)
    ddp_diff = max_abs_diff(tuple(ddp_grads.values()), tuple(reference['grads'].values()))
    print('\nmax |diff| vs one process: outputs',
          max_abs_diff(tuple(outs), tuple(reference['outs'])),
          'summed grads', max_abs_diff(tuple(grads.values()), tuple(reference['grads'].values())),
          'running stats', max(max_abs_diff(tuple(r['buffers'].values()),
                                            tuple(reference['buffers'].values()))
                               for r in ranks),
          'DDP grads x 2', ddp_diff)


def test_two_processes_need_no_single_sample_fallback(ranks):
    for rank in ranks:
        assert [m for m in rank['warnings'] if FALLBACK in m] == []
        assert rank['warnings'] == []


@pytest.mark.parametrize('momentum', [0.1, None])
def test_uneven_and_empty_batches_weight_statistics_by_samples(ranks, momentum):
    bn = randomize_(nn.BatchNorm2d(6, momentum=momentum), seed=2).train()
    gen = torch.Generator().manual_seed(7)
    for step in range(2):
        x = torch.randn(4, 6, 3, 3, generator=gen) * 2 + 1
        x = x[1:] if step == 0 else x
        out, x_grad, grads = _step(bn, x)
        got = [r['uneven'][momentum]['steps'][step] for r in ranks]
        _assert_close(torch.cat([g[0] for g in got]), out)
        _assert_close(torch.cat([g[1] for g in got]), x_grad)
        for i, grad in enumerate(grads):
            _assert_close(got[0][2][i] + got[1][2][i], grad)
    for rank in ranks:
        for key, value in bn.state_dict().items():
            _assert_close(rank['uneven'][momentum]['state'][key], value)


def test_a_global_count_of_one_fails_on_every_rank_as_torch(ranks):
    for rank in ranks:
        assert rank['uneven']['count_one'].startswith(
            'Expected more than 1 value per channel when training, got input size')
