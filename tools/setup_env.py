"""Prepare the current Python environment for resnest_mm; safe to run again (seconds when ready).

Installs only what is missing or at the wrong version, into the interpreter that runs this
script (activate a virtual environment first to keep it apart from the system):

- torch, only when no torch is installed at all (``torch==2.13.0``; set ``RESNEST_TORCH`` to
  pick another spec, e.g. a CUDA build you already use);
- mmcv 2.1.0 built from source with its compiled ops (about 10 minutes on 2 cores, once: pip
  caches the wheel) when mmcv is missing, at another version, or lacks ``mmcv._ext``;
- mmengine 0.10.7, mmdet 3.3.0, mmsegmentation 1.2.2 (+ ftfy, regex, which it forgets);
- this package in editable mode with its test extras.

Only the standard library is used here, so it runs before anything else is installed.
"""

from __future__ import annotations  # the annotations below must not break Python < 3.10

import importlib.metadata as metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_SPEC = os.environ.get('RESNEST_TORCH', 'torch==2.13.0')
MMCV_VERSION = '2.1.0'
# mmcv's setup.py imports pkg_resources (gone from the newest setuptools); torch 2.13 itself
# needs setuptools >= 77.0.3. Both accept this range.
BUILD_TOOLS = ['setuptools>=77.0.3,<80', 'wheel', 'ninja']
PINNED = {
    'mmengine': '0.10.7',
    'mmdet': '3.3.0',
    'mmsegmentation': '1.2.2',
}
UNPINNED = ['ftfy', 'regex']
# The tests extra of setup.py: a missing one reinstalls this package with its extras.
TEST_DEPS = ('pytest', 'ruff', 'resnest', 'onnx', 'onnxruntime', 'model-index')


def stop(message: str) -> None:
    print(f'setup_env: {message}', file=sys.stderr)
    sys.exit(1)


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def pip(*args: str, env: dict | None = None) -> None:
    cmd = [sys.executable, '-m', 'pip', 'install', *args]
    print('+', ' '.join(cmd), flush=True)
    if subprocess.call(cmd, env=env) != 0:
        stop(f'`{" ".join(cmd)}` failed; see the pip output above.')


def mmcv_has_ops() -> bool:
    if version_of('mmcv') != MMCV_VERSION:
        return False
    files = metadata.distribution('mmcv').files or []
    return any(str(f).startswith('mmcv/_ext') for f in files)


def editable_here() -> bool:
    """Is resnest_mm installed, and does `import resnest_mm` load this checkout's package?"""
    if version_of('resnest_mm') is None:
        return False
    spec = importlib.util.find_spec('resnest_mm')
    return spec is not None and Path(spec.origin).resolve() == REPO / 'resnest_mm' / '__init__.py'


def main() -> None:
    if sys.version_info < (3, 10):  # noqa: UP036  (this script must run on old Pythons to say so)
        stop(f'Python 3.10 or newer is needed; this is {sys.version.split()[0]}. '
             'Run with a newer interpreter, e.g. `make test PYTHON=python3.11`.')
    if subprocess.call([sys.executable, '-m', 'pip', '--version'],
                       stdout=subprocess.DEVNULL) != 0:
        stop(f'pip is not available for {sys.executable}; install it '
             '(`python3 -m ensurepip` or your distribution\'s python3-pip).')

    if version_of('torch') is None:
        pip(TORCH_SPEC)
    if not mmcv_has_ops():
        compiler = shutil.which(os.environ.get('CXX', 'c++')) or shutil.which('g++')
        if compiler is None:
            stop('mmcv 2.1.0 must be compiled and no C++ compiler was found. Install one '
                 '(Debian/Ubuntu: `apt-get install g++`) and run this again.')
        pip(*BUILD_TOOLS)
        print('setup_env: building mmcv 2.1.0 with its ops from source (about 10 min on '
              '2 cores; pip caches the wheel for next time)', flush=True)
        env = dict(os.environ, MAX_JOBS=os.environ.get('MAX_JOBS', str(os.cpu_count() or 2)))
        pip('--no-build-isolation', f'mmcv=={MMCV_VERSION}', env=env)
        if not mmcv_has_ops():
            stop('mmcv was installed without its compiled ops (mmcv._ext); '
                 'remove mmcv-lite if present and run this again.')

    wanted = [f'{d}=={v}' for d, v in PINNED.items() if version_of(d) != v]
    wanted += [d for d in UNPINNED if version_of(d) is None]
    if wanted:
        pip(*wanted)
    test_deps_missing = any(version_of(d) is None for d in TEST_DEPS)
    if test_deps_missing or not editable_here():
        pip('--no-build-isolation', '-e', f'{REPO}[tests]')
    print(f'setup_env: ready (torch {version_of("torch")}, mmcv {version_of("mmcv")}, '
          f'mmdet {version_of("mmdet")}, mmseg {version_of("mmsegmentation")})')


if __name__ == '__main__':
    main()
