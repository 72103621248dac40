"""Library side of the tools: config loading, CPU-distributed set-up, train and test runs,
building a model from a config, ONNX export of a config.

Importing this package imports neither mmdet nor mmseg; the Runner loads the one a config
names in ``default_scope``.
"""

from .build import build_from_config, sync_bn_to_bn
from .config import DatasetNotFoundError, check_dataset_paths, codebase_of, load_config
from .distributed import replace_sync_bn, setup_cpu_distributed
from .export import export_config
from .mmengine_checkpoints import mmengine_checkpoint_globals
from .runner import (
    USER_ERRORS,
    build_runner,
    build_test_config,
    build_train_config,
    prepare_run,
    run_test,
    run_train,
)

__all__ = [
    'USER_ERRORS',
    'DatasetNotFoundError',
    'build_from_config',
    'build_runner',
    'build_test_config',
    'build_train_config',
    'check_dataset_paths',
    'codebase_of',
    'export_config',
    'load_config',
    'mmengine_checkpoint_globals',
    'prepare_run',
    'replace_sync_bn',
    'run_test',
    'run_train',
    'setup_cpu_distributed',
    'sync_bn_to_bn',
]
