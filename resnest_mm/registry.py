"""Every registry ``resnest_mm`` registers into or creates.

Each is a child of mmengine's root registry of its kind with the scope ``resnest_mm``, so
``type='resnest_mm.ResNeSt'`` (or ``'resnest_mm.DropBlockScheduleHook'``, ...) resolves from
MMDetection's and MMSegmentation's registries (whatever the default scope) and from
mmengine's, without importing either library here. mmdet and mmseg each register a ``ResNeSt``
of their own; the ``resnest_mm.`` prefix is what keeps the two apart.

``MODEL_WRAPPERS`` is mmengine's root registry itself: the Runner builds
``model_wrapper_cfg`` by its bare type name from any scope, which only the root resolves.
"""

from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import MODEL_WRAPPERS, Registry
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='resnest_mm', locations=['resnest_mm.models'])

OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='resnest_mm',
    locations=['resnest_mm.precision'])

HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='resnest_mm',
                 locations=['resnest_mm.engine', 'resnest_mm.precision'])

LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope='resnest_mm',
                 locations=['resnest_mm.engine.loops'])

__all__ = ['HOOKS', 'LOOPS', 'MODELS', 'MODEL_WRAPPERS', 'OPTIM_WRAPPERS']
