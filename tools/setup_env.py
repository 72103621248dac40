"""Prepare the current Python environment for resnest_mm; safe to run again (seconds when ready).

Installs only what is missing or at the wrong version, into the interpreter that runs this
script (activate a virtual environment first to keep it apart from the system), or into the
virtual environment ``--venv PATH`` (made if missing, e.g. ``make test-compat``'s torch 2.1.2):

- torch, only when no torch is installed at all (``torch==2.13.0``; ``--torch SPEC`` or
  ``RESNEST_TORCH`` picks another, e.g. a CUDA build you already use). resnest_mm supports
  torch 2.1 to 2.13: an installed torch outside that range stops this script;
- numpy < 2 with a torch older than 2.3 (those were built against numpy 1.x);
- mmcv 2.1.0 compiled from source with its ops (about 10 minutes on 2 cores) when mmcv is
  missing, at another version, or its ``mmcv._ext`` does not load with this torch. It is built
  without pip's cache: pip keys a cached wheel by mmcv's version, not by the torch it was
  compiled against, and would reuse one built for another torch;
- mmengine 0.10.7, mmdet 3.3.0, mmsegmentation 1.2.2 (+ ftfy, regex, which it forgets);
- this package in editable mode with its test extras;
- openmim 0.3.9 with ``--no-deps`` (its dependency openxlab pins setuptools~=60.2 and
  requests~=2.28, which would downgrade this environment; the tests extra holds what mim imports);
- reference wheels the tests read without installing them (mmpretrain 1.2.0, whose ResNeSt the
  tests import from the wheel: the package itself needs torchvision), into
  ``RESNEST_MM_REFERENCE_WHEELS`` (default ``~/.cache/resnest_mm/wheels``).

Only the standard library is used here, so it runs before anything else is installed.
"""

from __future__ import annotations  # the annotations below must not break Python < 3.10

import argparse
import importlib.metadata as metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_SPEC = os.environ.get('RESNEST_TORCH', 'torch==2.13.0')
# The supported torch range, [oldest, newest] as (major, minor).
TORCH_RANGE = ((2, 1), (2, 13))
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
TEST_DEPS = ('pytest', 'ruff', 'resnest', 'onnx', 'onnxruntime', 'model-index', 'safetensors',
             'huggingface_hub', 'pandas', 'tabulate', 'wheel')
OPENMIM_VERSION = '0.3.9'
REFERENCE_WHEELS = {'mmpretrain': '1.2.0'}


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


def minor_version(version: str) -> tuple[int, int]:
    major, minor = re.match(r'(\d+)\.(\d+)', version).groups()
    return int(major), int(minor)


def check_torch_range(version: str) -> None:
    """Stop with one line when the installed torch is outside the supported range."""
    oldest, newest = TORCH_RANGE
    found = minor_version(version)
    if found > newest:
        stop(f'torch {version} is installed, but mmcv {MMCV_VERSION} cannot be compiled against '
             f'torch >= 2.14 (its headers need C++20, mmcv builds with C++17); install '
             f'torch<=2.13 (`pip install torch==2.13.0`) or set RESNEST_TORCH to such a spec '
             'in a fresh environment.')
    if found < oldest:
        stop(f'torch {version} is installed; resnest_mm needs torch 2.1 to 2.13. Install one '
             '(`pip install torch==2.13.0`, or `torch==2.1.2 "numpy<2"`).')


def mmcv_has_ops() -> bool:
    """Is mmcv 2.1.0 installed with compiled ops that load with the installed torch?"""
    if version_of('mmcv') != MMCV_VERSION:
        return False
    # A separate interpreter: a failed extension load must not poison this one.
    return subprocess.call([sys.executable, '-c', 'import mmcv._ext'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def reference_wheel_dir() -> Path:
    """Where the reference wheels are kept (``RESNEST_MM_REFERENCE_WHEELS``)."""
    default = Path('~/.cache/resnest_mm/wheels').expanduser()
    return Path(os.environ.get('RESNEST_MM_REFERENCE_WHEELS', default)).expanduser()


def reference_wheel(name: str) -> Path | None:
    """The downloaded wheel of reference package ``name`` at its pinned version, or None."""
    found = sorted(reference_wheel_dir().glob(f'{name}-{REFERENCE_WHEELS[name]}-*.whl'))
    return found[0] if found else None


def fetch_reference_wheels() -> None:
    """Download the missing reference wheels (``pip download --no-deps``; nothing installed)."""
    for name, version in REFERENCE_WHEELS.items():
        if reference_wheel(name) is not None:
            continue
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
               '-d', str(reference_wheel_dir()), f'{name}=={version}']
        print('+', ' '.join(cmd), flush=True)
        if subprocess.call(cmd) != 0 or reference_wheel(name) is None:
            stop(f'`{" ".join(cmd)}` failed; see the pip output above.')


def editable_here() -> bool:
    """Is resnest_mm installed, and does `import resnest_mm` load this checkout's package?"""
    if version_of('resnest_mm') is None:
        return False
    spec = importlib.util.find_spec('resnest_mm')
    return spec is not None and Path(spec.origin).resolve() == REPO / 'resnest_mm' / '__init__.py'


def into_venv(path: Path, torch_spec: str | None) -> None:
    """Make the virtual environment ``path`` if missing and run this script inside it."""
    python = path / 'bin' / 'python'
    if not python.exists():
        print(f'setup_env: creating the virtual environment {path}', flush=True)
        if subprocess.call([sys.executable, '-m', 'venv', str(path)]) != 0:
            stop(f'could not create a virtual environment at {path} (`python3 -m venv`); '
                 'install your distribution\'s python3-venv.')
    env = dict(os.environ)
    if torch_spec:
        env['RESNEST_TORCH'] = torch_spec
    sys.exit(subprocess.call([str(python), __file__], env=env))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--venv', type=Path, help='set up this virtual environment (made if '
                        'missing) instead of the running interpreter')
    parser.add_argument('--torch', help='the torch to install when none is, e.g. '
                        '"torch==2.1.2" (default: $RESNEST_TORCH or torch==2.13.0)')
    args = parser.parse_args()
    if args.venv is not None:
        into_venv(args.venv.resolve(), args.torch)
    torch_spec = args.torch or TORCH_SPEC
    if sys.version_info < (3, 10):  # noqa: UP036  (this script must run on old Pythons to say so)
        stop(f'Python 3.10 or newer is needed; this is {sys.version.split()[0]}. '
             'Run with a newer interpreter, e.g. `make test PYTHON=python3.11`.')
    if subprocess.call([sys.executable, '-m', 'pip', '--version'],
                       stdout=subprocess.DEVNULL) != 0:
        stop(f'pip is not available for {sys.executable}; install it '
             '(`python3 -m ensurepip` or your distribution\'s python3-pip).')

    if version_of('torch') is None:
        torch_version = re.search(r'==\s*([\d.]+)', torch_spec)
        old = torch_version is not None and minor_version(torch_version.group(1)) < (2, 3)
        pip(torch_spec, *(['numpy<2'] if old else []))
    check_torch_range(version_of('torch'))
    # Every install below keeps numpy < 2 for a torch built against numpy 1.x.
    pins = ['numpy<2'] if minor_version(version_of('torch')) < (2, 3) else []
    if pins and minor_version(version_of('numpy') or '1.0') >= (2, 0):
        pip(*pins)
    if not mmcv_has_ops():
        compiler = shutil.which(os.environ.get('CXX', 'c++')) or shutil.which('g++')
        if compiler is None:
            stop('mmcv 2.1.0 must be compiled and no C++ compiler was found. Install one '
                 '(Debian/Ubuntu: `apt-get install g++`) and run this again.')
        pip(*BUILD_TOOLS)
        print(f'setup_env: building mmcv {MMCV_VERSION} with its ops from source against torch '
              f'{version_of("torch")} (about 10 min on 2 cores)', flush=True)
        env = dict(os.environ, MAX_JOBS=os.environ.get('MAX_JOBS', str(os.cpu_count() or 2)))
        if version_of('mmcv') is not None:
            subprocess.call([sys.executable, '-m', 'pip', 'uninstall', '-y', 'mmcv'])
        pip('--no-build-isolation', '--no-cache-dir', f'mmcv=={MMCV_VERSION}', *pins, env=env)
        if not mmcv_has_ops():
            stop('mmcv was installed but its compiled ops (mmcv._ext) do not load with torch '
                 f'{version_of("torch")}; remove mmcv-lite if present and run this again.')

    wanted = [f'{d}=={v}' for d, v in PINNED.items() if version_of(d) != v]
    wanted += [d for d in UNPINNED if version_of(d) is None]
    if wanted:
        pip(*wanted, *pins)
    test_deps_missing = any(version_of(d) is None for d in TEST_DEPS)
    if test_deps_missing or not editable_here():
        pip('--no-build-isolation', '-e', f'{REPO}[tests]', *pins)
    if version_of('openmim') != OPENMIM_VERSION:
        pip('--no-deps', f'openmim=={OPENMIM_VERSION}')
    fetch_reference_wheels()
    print(f'setup_env: ready (torch {version_of("torch")}, mmcv {version_of("mmcv")}, '
          f'mmdet {version_of("mmdet")}, mmseg {version_of("mmsegmentation")})')


if __name__ == '__main__':
    main()
