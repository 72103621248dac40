"""Distributed runs without CUDA: gloo, DDP without device ids, SyncBN replaced by BN.

mmengine 0.10's launchers call ``torch.cuda.set_device`` and default to NCCL, and its Runner
wraps models in DDP with ``device_ids=[local_rank]``; ``SyncBatchNorm`` refuses CPU tensors.
When CUDA is unavailable, :func:`setup_cpu_distributed` initialises the process group itself
(the Runner then skips its own CUDA-bound initialisation) and rewrites the config so the
Runner builds a CPU-compatible model. With CUDA nothing is changed: mmengine does its usual.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from typing import Any

import torch
import torch.distributed as dist
from mmengine.config import Config

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm')
SYNC_BN_WARNING = (
    'SyncBN is not available for distributed runs on the CPU: {count} norm layer config(s) '
    'with type SyncBN use BN instead (statistics per process, not synchronised).')


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
    """Replace every ``type='SyncBN'`` (and mmcv's MMSyncBN) norm config by BN, in place.

    Args:
        node: a config (dict, list or tuple, nested).

    Returns:
        How many norm configs were changed.
    """
    count = 0
    if isinstance(node, dict):
        if node.get('type') in SYNC_BN_TYPES:
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += replace_sync_bn(value)
    return count


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
    ``model_wrapper_cfg`` to DDP without device ids, replaces SyncBN by BN (one warning, from
    rank 0) and gives each metric a result-collection folder under the work dir, which every
    rank must see (a shared file system across nodes).

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
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    count = replace_sync_bn(cfg.model) + (cfg.pop('sync_bn', None) is not None)
    if count and dist.get_rank() == 0:
        warnings.warn(SYNC_BN_WARNING.format(count=count), stacklevel=2)
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
