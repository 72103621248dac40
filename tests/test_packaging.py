"""The package as users install it.

- The wheel carries the configs, the tools and the model index in ``resnest_mm/.mim/``, where
  OpenMMLab's own wheels carry theirs (``mim train/test`` look there).
- Installed from the wheel into a fresh virtual environment (torch, mmcv, mmdet, mmseg and
  openmim from the system's site-packages), from a folder outside the checkout: a config found
  inside the package builds its model, a user's config inherits ours, and ``mim train`` /
  ``mim test`` (openmim 0.3.9) run a tiny config.
- mmengine refuses a ``resnest_mm::`` config scope; ``config_path`` is the supported way.
- LICENSE, CITATION.cff and the README's BibTeX.

The whole check, as CI runs it: ``python3 -m pytest tests/test_packaging.py -m "slow or not slow"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml
from mmengine.config import Config
from tiny import as_cli, tiny_segmentation_options

import resnest_mm
from resnest_mm.datasets import make_ade20k

REPO = Path(__file__).resolve().parents[1]
MIM = 'resnest_mm/.mim'
DEMO_SEG = 'deeplabv3_resnest50_d8_shapes.py'


def source_files() -> list[str]:
    """The checkout's files as a clean clone (with uncommitted work) has them."""
    out = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split('\0') if f and (REPO / f).is_file()]


def shipped(folder: str, patterns: tuple[str, ...]) -> set[str]:
    root = REPO / folder
    return {f'{folder}/{p.relative_to(root)}' for pattern in patterns for p in root.rglob(pattern)
            if '__pycache__' not in p.parts}


def clean_env() -> dict[str, str]:
    """The environment without this checkout on the path."""
    return {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}


@pytest.fixture(scope='module')
def source(tmp_path_factory) -> Path:
    """A copy of the checkout, so the build leaves the working tree as it was."""
    dst = tmp_path_factory.mktemp('src')
    for name in source_files():
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dst / name)
    return dst


@pytest.fixture(scope='module')
def wheel(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('dist')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', str(source), '--no-deps',
                    '--no-build-isolation', '-q', '-w', str(out)], check=True, env=clean_env())
    wheels = list(out.glob('resnest_mm-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope='module')
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with only the wheel installed on top of the system's
    packages (pip itself comes from the system's site-packages)."""
    root = tmp_path_factory.mktemp('venv')
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', '--without-pip',
                    str(root)], check=True)
    python = root / 'bin' / 'python'
    subprocess.run([str(python), '-m', 'pip', 'install', '--no-deps', '--no-index', '-q',
                    str(wheel)], check=True, env=clean_env())
    return root


def run_python(venv: Path, args: list[str], cwd: Path, timeout: int = 300) -> str:
    """Run the venv's Python outside the checkout; its output (stdout and stderr)."""
    proc = subprocess.run([str(venv / 'bin' / 'python'), *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def test_wheel_carries_configs_tools_and_model_index(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = shipped('configs', ('*.py', '*.yml'))
    tools = shipped('tools', ('*.py', '*.sh'))
    assert {f'{MIM}/{f}' for f in configs | tools} <= names
    assert f'{MIM}/model-index.yml' in names
    assert {f'{MIM}/configs/demo/_base_/shapes_coco.py', f'{MIM}/tools/train.py',
            f'{MIM}/tools/test.py'} <= names
    zoo = [m['Config'] for m in yaml.safe_load((REPO / 'configs' / 'metafile.yml').read_text())
           ['Models']]
    assert len(zoo) == 20 and all(f'{MIM}/{c}' in names for c in zoo)
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc')]
    assert any(n.endswith('.dist-info/licenses/LICENSE') or n.endswith('.dist-info/LICENSE')
               for n in names)


def test_build_leaves_the_source_tree_without_mim_folder(wheel, source):
    """The wheel's .mim/ is written into the build directory only: a checkout (and an editable
    install of it) keeps reading configs/ and tools/ and git sees nothing new."""
    assert not (source / 'resnest_mm' / '.mim').exists()
    assert Path(resnest_mm.config_path()) == REPO / 'configs'
    assert Path(resnest_mm.tool_path('train.py')) == REPO / 'tools' / 'train.py'


def test_installed_wheel_config_builds_its_model(venv, tmp_path):
    user_config = tmp_path / 'my_deeplabv3.py'
    user_config.write_text(textwrap.dedent(f"""\
        _base_ = __import__('resnest_mm').config_path('demo/{DEMO_SEG}')
        model = dict(decode_head=dict(num_classes=7))
        """))
    code = textwrap.dedent(f"""\
        import os, sys
        import resnest_mm
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        assert resnest_mm.__file__.startswith(sys.prefix), resnest_mm.__file__
        path = resnest_mm.config_path('faster_rcnn_resnest50_fpn.py')
        assert '/site-packages/resnest_mm/.mim/configs/' in path, path
        for tool in ('train.py', 'test.py', 'infer.py', 'dist_train.sh'):
            assert os.path.isfile(resnest_mm.tool_path(tool)), tool
        cfg = Config.fromfile(path)
        init_default_scope(cfg.default_scope)
        from mmdet.registry import MODELS
        model = MODELS.build(cfg.model)
        print('built', type(model).__name__, type(model.backbone).__module__, model.backbone.depth)
        user = Config.fromfile({str(user_config)!r})
        print('user', user.model.decode_head.num_classes, user.model.backbone.type,
              user.train_cfg.max_iters)
        """)
    out = run_python(venv, ['-c', code], cwd=tmp_path)
    assert 'built FasterRCNN resnest_mm.models.resnest 50' in out
    demo = Config.fromfile(resnest_mm.config_path(f'demo/{DEMO_SEG}'))
    assert f'user 7 resnest_mm.ResNeSt {demo.train_cfg.max_iters}' in out


def test_mmengine_refuses_a_resnest_mm_scope(tmp_path):
    """mmengine 0.10 maps scopes to packages through a fixed table (MODULE2PACKAGE)."""
    config = tmp_path / 'scoped.py'
    config.write_text(f"_base_ = 'resnest_mm::demo/{DEMO_SEG}'\n")
    with pytest.raises((AssertionError, KeyError, ValueError, ModuleNotFoundError),
                       match='resnest_mm'):
        Config.fromfile(str(config))


def test_a_users_config_inherits_ours_through_config_path(tmp_path):
    config = tmp_path / 'mine.py'
    config.write_text(
        "_base_ = __import__('resnest_mm').config_path('faster_rcnn_resnest50_fpn.py')\n"
        'model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))\n')
    cfg = Config.fromfile(str(config))
    ours = Config.fromfile(resnest_mm.config_path('faster_rcnn_resnest50_fpn.py'))
    assert cfg.model.roi_head.bbox_head.num_classes == 3
    assert cfg.model.backbone == ours.model.backbone
    assert cfg.optim_wrapper == ours.optim_wrapper


def test_unknown_config_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match=r'configs/nope\.py.*faster_rcnn_resnest50_fpn\.py'):
        resnest_mm.config_path('nope.py')


@pytest.mark.slow
def test_mim_trains_and_tests_a_tiny_config_of_the_installed_package(venv, tmp_path):
    """openmim 0.3.9 finds the config by name inside the installed package and runs our
    tools from resnest_mm/.mim/tools."""
    data = str(make_ade20k(tmp_path / 'ade', num_train=2, num_val=2, seed=0, height=64,
                           width=64)) + '/'
    tiny = tiny_segmentation_options(data, max_iters=2)
    options = as_cli(tiny)
    work = tmp_path / 'work'
    out = run_python(venv, ['-m', 'mim', 'train', 'resnest_mm', DEMO_SEG, '--gpus', '0',
                            '--work-dir', str(work), *options], cwd=tmp_path, timeout=600)
    assert '/site-packages/resnest_mm/.mim/tools/train.py' in out
    assert '/site-packages/resnest_mm/.mim/configs/demo/' in out
    checkpoint = work / 'iter_2.pth'
    assert checkpoint.is_file(), out[-3000:]
    out = run_python(venv, ['-m', 'mim', 'test', 'resnest_mm', DEMO_SEG, '--checkpoint',
                            str(checkpoint), '--work-dir', str(tmp_path / 'test'),
                            *as_cli({**tiny, 'log_level': 'INFO'})],
                     cwd=tmp_path, timeout=600)
    assert '/site-packages/resnest_mm/.mim/tools/test.py' in out
    assert 'Testing finished successfully' in out
    assert 'mIoU' in out, out[-3000:]  # the metrics of the test run, logged at INFO
    # mim reads the zoo from the package's .mim/model-index.yml.
    out = run_python(venv, ['-m', 'mim', 'search', 'resnest_mm'], cwd=tmp_path)
    zoo = yaml.safe_load((REPO / 'configs' / 'metafile.yml').read_text())['Models']
    for model in zoo:
        assert f'config id: {model["Name"]}\n' in out


def test_license_is_the_apache_2_text():
    text = (REPO / 'LICENSE').read_text()
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text
    assert 'END OF TERMS AND CONDITIONS' in text
    setup = (REPO / 'setup.py').read_text()
    assert "license='Apache-2.0'" in setup


def test_citation_names_the_paper_as_the_readme_bibtex_does():
    cff = yaml.safe_load((REPO / 'CITATION.cff').read_text())
    assert cff['cff-version'] == '1.2.0' and cff['license'] == 'Apache-2.0'
    paper = cff['preferred-citation']
    assert paper['title'] == 'ResNeSt: Split-Attention Networks' and paper['year'] == 2022
    assert any('2004.08955' in i['value'] for i in paper['identifiers'])
    readme = (REPO / 'README.md').read_text()
    bibtex = readme[readme.index('@inproceedings'):]
    bibtex = bibtex[:bibtex.index('\n}') + 2]
    authors = bibtex.split('author', 1)[1].split('{', 1)[1].split('}', 1)[0]
    names = [a.strip() for a in authors.split(' and ')]
    assert names == [f"{a['family-names']}, {a['given-names']}" for a in paper['authors']]
    assert '{ResNeSt: Split-Attention Networks}' in bibtex and '2022' in bibtex
