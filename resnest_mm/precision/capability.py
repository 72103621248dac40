"""Whether this CPU runs bfloat16 natively, and the one warning when it does not."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

_warned = False


def cpu_isa() -> dict:
    """The CPU's instruction-set level as torch sees it.

    ``capability`` is ``torch.backends.cpu.get_cpu_capability()`` (e.g. ``'AVX2'``,
    ``'AVX512'``); ``avx512_bf16`` and ``amx`` say whether the CPU has bf16 dot-product or AMX
    tile instructions, the two that make oneDNN's bf16 kernels fast.
    """
    cpu = getattr(torch, 'cpu', None)

    def probe(name: str, flag: str) -> bool:
        check = getattr(cpu, name, None)
        if callable(check):
            return bool(check())
        return flag in _cpuinfo_flags()  # torch < 2.3 cannot tell: ask the kernel (Linux)

    return dict(capability=torch.backends.cpu.get_cpu_capability(),
                avx512_bf16=probe('_is_avx512_bf16_supported', 'avx512_bf16'),
                amx=probe('_is_amx_tile_supported', 'amx_tile'))


def _cpuinfo_flags() -> set[str]:
    """The CPU flags Linux lists in /proc/cpuinfo (empty elsewhere)."""
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith('flags'):
            return set(line.split(':', 1)[1].split())
    return set()


def has_bf16_instructions() -> bool:
    """True where the CPU has AVX512-BF16 or AMX."""
    isa = cpu_isa()
    return isa['avx512_bf16'] or isa['amx']


def onednn_version() -> str | None:
    """oneDNN's version as torch was built with it (``torch.__config__.show()``), if any."""
    match = re.search(r'(?:oneDNN|MKL-DNN) v(\S+)', torch.__config__.show())
    return match.group(1) if match else None


def warn_if_bf16_is_slow() -> bool:
    """Warn, once per process, when bf16 autocast on this CPU will be slow; True if it warned."""
    global _warned
    if _warned or has_bf16_instructions():
        return False
    _warned = True
    warnings.warn(
        f'bf16 autocast on this CPU ({torch.backends.cpu.get_cpu_capability()}, no AVX512-BF16 '
        'or AMX) emulates bfloat16 and will be slow: expect no speed-up over fp32, often a '
        'slow-down', RuntimeWarning, stacklevel=2)
    return True
