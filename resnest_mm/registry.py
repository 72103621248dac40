"""The ``resnest_mm`` model registry (and the optimizer-wrapper one).

It is a child of mmengine's root ``MODELS``, so ``type='resnest_mm.ResNeSt'`` resolves to our
backbone from MMDetection's and MMSegmentation's registries (whatever the default scope) and
from mmengine's, without importing either library here. mmdet and mmseg each register a
``ResNeSt`` of their own; the ``resnest_mm.`` prefix is what keeps the two apart.
"""

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='resnest_mm', locations=['resnest_mm.models'])

OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='resnest_mm',
    locations=['resnest_mm.precision'])
