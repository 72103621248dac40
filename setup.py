"""resnest_mm: ResNeSt (Split-Attention Networks) for MMDetection 3.x and MMSegmentation 1.x."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
# What OpenMMLab's own wheels carry in <package>/.mim/ (mim train/test, mmengine's config
# lookup): the configs, the tools and the model index. Copied only into a built wheel or sdist
# install; an editable install leaves .mim/ absent and reads configs/ and tools/ of the checkout.
MIM_FILES = {
    'configs': ('*.py', '*.yml'),
    'tools': ('*.py', '*.sh'),
    'model-index.yml': (),
}


class BuildPyWithMim(build_py):
    """build_py that also writes ``resnest_mm/.mim/`` into the build directory (not the source
    tree, so the checkout and its git status stay as they are)."""

    def run(self) -> None:
        super().run()
        if not getattr(self, 'editable_mode', False):
            self.mim_outputs = copy_mim_files(Path(self.build_lib) / 'resnest_mm' / '.mim')

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return super().get_outputs(include_bytecode) + getattr(self, 'mim_outputs', [])


def copy_mim_files(dst: Path) -> list[str]:
    """Copy ``MIM_FILES`` of the source tree to ``dst``; return the files written."""
    written = []
    for name, patterns in MIM_FILES.items():
        src = HERE / name
        if src.is_file():
            files = [(src, dst / name)]
        else:
            files = [(f, dst / name / f.relative_to(src)) for pattern in patterns
                     for f in src.rglob(pattern) if '__pycache__' not in f.parts]
        if not files:
            raise FileNotFoundError(f'{src}: nothing to put into the wheel\'s .mim/')
        for source, target in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)  # keeps the mode: tools/*.sh stay executable
            written.append(str(target))
    return written


version: dict = {}
exec((HERE / 'resnest_mm' / 'version.py').read_text(), version)

MMDET = ['mmdet>=3.3.0,<3.4']
# mmsegmentation 1.2.2 imports ftfy and regex without declaring them.
MMSEG = ['mmsegmentation>=1.2.2,<1.3', 'ftfy', 'regex']
# checkpoint='hf-hub:timm/<name>' downloads through the Hugging Face hub client (`hf` command).
HUB = ['huggingface_hub>=0.34']
# openmim 0.3.9 itself is installed with --no-deps (tools/setup_env.py): its dependency openxlab
# pins setuptools~=60.2 and requests~=2.28, which would downgrade this environment. These are
# the dependencies its train/test/list/search commands import.
MIM_DEPS = ['click', 'colorama', 'model-index', 'pandas', 'requests', 'rich', 'tabulate']
TESTS = [
    'pytest>=7',
    'ruff>=0.5',
    # The authors' own package: the reference implementation of the official layout in tests.
    'resnest==0.0.5',
    # ONNX export checks (tests/test_export.py, tools/export_onnx.py).
    'onnx>=1.15',
    'onnxruntime>=1.17',
    # Parses configs/metafile.yml in tests/test_metafile.py (pure Python, 34 kB).
    'model-index>=0.1.11',
    # The package tests: wheel build (tests/test_packaging.py) and the hub client's cache layout.
    'wheel',
    *HUB,
    *MIM_DEPS,
]

setup(
    name='resnest_mm',
    version=version['__version__'],
    description='ResNeSt backbone for MMDetection 3.x and MMSegmentation 1.x',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['resnest_mm', 'resnest_mm.*']),
    cmdclass={'build_py': BuildPyWithMim},
    install_requires=[
        # torch 2.1 to 2.13: mmcv 2.1.0 does not compile against 2.14's C++20 headers.
        'torch>=2.1,<2.14',
        'mmengine>=0.10.0,<1.0',
        # mmdet 3.3 and mmseg 1.2 refuse mmcv 2.2; the compiled ops (RoIAlign, NMS) are needed.
        'mmcv>=2.0.0rc4,<2.2.0',
        'numpy',
        # model.safetensors of the Hugging Face hub (hf-hub:timm/<name>) and any .safetensors file.
        'safetensors>=0.4',
    ],
    extras_require={
        'mmdet': MMDET,
        'mmseg': MMSEG,
        'hub': HUB,
        'tests': TESTS,
        'all': MMDET + MMSEG + HUB + TESTS,
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
