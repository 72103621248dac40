"""The import direction docs/architecture.md states, checked over every module of the package.

Each part of the package sits in a layer; a module imports only from its own part, from lower
layers, or, inside its layer, along the order listed there (so no cycle). The imports are read
from the source (``ast``), including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'resnest_mm'

# Top to bottom; inside a layer, a part may import the parts listed after it.
LAYERS = [
    ['apis', 'benchmark', 'deploy', 'visualization'],
    ['engine', 'precision', 'datasets'],
    ['models'],
    ['pretrained'],
    ['registry', 'compat', 'version', 'package_files'],
]
# The one import against the direction: the depth table, pure data, that the pretrained
# weights' reports print (imported inside a function).
ALLOWED_UPWARD = {('pretrained.reports', 'models.arch')}
# The package's entry point (``import resnest_mm`` registers everything): the fronts may
# import it; nothing below them.
ENTRY_POINT = '__init__'
NO_MODEL_CODE = ('engine', 'precision')  # they act on the Runner and its hooks only


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts) or ENTRY_POINT


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports, relative to the package."""
    name = _module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.') if package and package != ENTRY_POINT else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = '.'.join([*base, *([node.module] if node.module else [])])
            elif (node.module or '').startswith('resnest_mm'):
                target = node.module.removeprefix('resnest_mm').lstrip('.')
            else:
                continue
            if node.module is None:  # from . import x
                found |= {f'{target}.{a.name}'.lstrip('.') for a in node.names}
            else:
                found.add(target or ENTRY_POINT)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix('resnest_mm').lstrip('.') or ENTRY_POINT
                      for a in node.names if a.name.startswith('resnest_mm')}
    return found


def _part(module: str) -> str:
    return module.split('.')[0]


def _rank(part: str) -> tuple[int, int]:
    for layer, parts in enumerate(LAYERS):
        if part in parts:
            return layer, parts.index(part)
    raise AssertionError(f'{part} is in no layer of docs/architecture.md: add it there and here')


MODULES = sorted(p for p in PACKAGE.rglob('*.py') if '.mim' not in p.parts)


@pytest.mark.parametrize('path', MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    module = _module_name(path)
    if module == ENTRY_POINT:
        return  # the entry point imports what it registers
    here = _part(module)
    wrong = []
    for target in sorted(_imports(path)):
        there = _part(target)
        if there == here or (module, target) in ALLOWED_UPWARD:
            continue
        if there == ENTRY_POINT:
            if _rank(here)[0] != 0:
                wrong.append(f'{target} (the entry point, only the fronts import it)')
            continue
        if _rank(there) <= _rank(here):
            wrong.append(target)
    assert not wrong, f'{module} imports against the direction: {wrong}'


@pytest.mark.parametrize('part', NO_MODEL_CODE)
def test_engine_and_precision_import_no_model_code(part):
    for path in (PACKAGE / part).rglob('*.py'):
        models = sorted(t for t in _imports(path) if _part(t) in ('models', ENTRY_POINT))
        assert not models, f'{path.relative_to(PACKAGE)} imports {models}'


def test_every_part_is_documented():
    documented = (PACKAGE.parent / 'docs' / 'architecture.md').read_text()
    for path in MODULES:
        part = _part(_module_name(path))
        if part != ENTRY_POINT:
            _rank(part)
            assert f'`{part}' in documented, f'docs/architecture.md does not name {part}'


def test_the_checker_sees_a_wrong_import(tmp_path, monkeypatch):
    """A models module importing the engine is caught (the check can fail)."""
    fake = PACKAGE / 'models' / 'resnest.py'
    source = fake.read_text() + '\nfrom ..engine import TrainingPreempted\n'
    monkeypatch.setattr(Path, 'read_text', lambda self, *a, **k: source)
    with pytest.raises(AssertionError, match=r'models\.resnest imports against the direction: '
                       r"\['engine'\]"):
        test_imports_run_one_way(fake)
