"""resnest_mm: ResNeSt (Split-Attention Networks) for MMDetection 3.x and MMSegmentation 1.x."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version: dict = {}
exec((HERE / 'resnest_mm' / 'version.py').read_text(), version)

MMDET = ['mmdet>=3.3.0,<3.4']
# mmsegmentation 1.2.2 imports ftfy and regex without declaring them.
MMSEG = ['mmsegmentation>=1.2.2,<1.3', 'ftfy', 'regex']
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
    install_requires=[
        # torch 2.1 to 2.13: mmcv 2.1.0 does not compile against 2.14's C++20 headers.
        'torch>=2.1,<2.14',
        'mmengine>=0.10.0,<1.0',
        # mmdet 3.3 and mmseg 1.2 refuse mmcv 2.2; the compiled ops (RoIAlign, NMS) are needed.
        'mmcv>=2.0.0rc4,<2.2.0',
        'numpy',
    ],
    extras_require={
        'mmdet': MMDET,
        'mmseg': MMSEG,
        'tests': TESTS,
        'all': MMDET + MMSEG + TESTS,
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
