"""Where the configs, tools and model index are: inside an installed wheel or in the checkout.

A wheel carries them as OpenMMLab's packages do, in ``resnest_mm/.mim/`` (``configs/``,
``tools/``, ``model-index.yml``), which is where ``mim train resnest_mm ...`` finds them. An
editable install or a checkout on ``PYTHONPATH`` has no ``.mim/``: there they are the
repository's own ``configs/``, ``tools/`` and ``model-index.yml``.

mmengine 0.10 resolves ``_base_ = 'pkg::path'`` only for the packages of its fixed
``MODULE2PACKAGE`` table, so ``resnest_mm::`` is refused. A config of your own inherits ours by
path instead::

    _base_ = __import__('resnest_mm').config_path('faster_rcnn_resnest50_fpn.py')

(mmengine evaluates the ``_base_`` expression on its own, before the rest of the file, so it
must be one expression; ``__import__`` is the built-in it can call).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
MIM_ROOT = PACKAGE / '.mim'
CHECKOUT = PACKAGE.parent


def files_root() -> Path:
    """``resnest_mm/.mim`` of an installed wheel, else the checkout holding this package."""
    if (MIM_ROOT / 'configs').is_dir():
        return MIM_ROOT
    if (CHECKOUT / 'configs').is_dir():
        return CHECKOUT
    raise FileNotFoundError(
        f'resnest_mm at {PACKAGE} has neither .mim/configs (an installed wheel) nor a checkout\'s '
        'configs/ beside it; reinstall it from a wheel (pip install resnest_mm-*.whl) or '
        'install the checkout (pip install -e .).')


def _find(folder: str, name: str) -> Path:
    root = files_root() / folder
    path = root / name
    if path.exists():
        return path
    known = sorted(str(p.relative_to(root)) for p in root.rglob('*.py')
                   if '__pycache__' not in p.parts and '_base_' not in p.parts)
    raise FileNotFoundError(f'{folder}/{name} is not in resnest_mm ({root}); available: '
                            f'{", ".join(known)}.')


def config_path(name: str = '') -> str:
    """Absolute path of a config shipped with resnest_mm, e.g. ``config_path('demo/...py')``.

    Args:
        name: Path relative to ``configs/`` (``'faster_rcnn_resnest50_fpn.py'``); empty for the
            folder itself.

    Raises:
        FileNotFoundError: no such config; the message lists the available ones.
    """
    return str(_find('configs', name))


def tool_path(name: str = '') -> str:
    """Absolute path of a tool shipped with resnest_mm (``tool_path('train.py')``)."""
    return str(_find('tools', name))


def model_index_path() -> str:
    """Absolute path of ``model-index.yml`` (OpenMMLab's model index of the configs)."""
    return str(_find('', 'model-index.yml'))
