"""What the figures were measured on: CPU model, cores, load, library versions, GPU."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from ..precision import cpu_isa, onednn_version


def machine_info(device: str) -> dict:
    """CPU model and ISA, cores, load, torch and oneDNN versions, threads (GPU name on CUDA)."""
    info = dict(cpu=cpu_model(), isa=cpu_isa(), cores=os.cpu_count(), torch=torch.__version__,
                onednn=onednn_version(), threads=torch.get_num_threads(),
                python=platform.python_version())
    if hasattr(os, 'getloadavg'):
        info['load_average'] = [round(x, 2) for x in os.getloadavg()]
    if device == 'cuda':
        info['gpu'] = torch.cuda.get_device_name()
    return info


def cpu_model() -> str:
    """The ``model name`` of /proc/cpuinfo, else what the platform module says."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'
