"""Deployment: compiled inference (``--compile``)."""

from .compile import (
    CompileHook,
    CompileReport,
    CompileUnavailableError,
    add_compile_hook,
    cache_dir,
    check_compiler,
    compile_model,
    uncompile,
)

__all__ = [
    'CompileHook', 'CompileReport', 'CompileUnavailableError', 'add_compile_hook', 'cache_dir',
    'check_compiler', 'compile_model', 'uncompile',
]
