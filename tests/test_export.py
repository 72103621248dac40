"""Export: torch.jit.trace / script, torch.compile and ONNX (checked with onnxruntime)."""

from __future__ import annotations

import importlib

import pytest
import torch
from conftest import max_abs_diff, randomize_

from resnest_mm import ResNeSt
from resnest_mm.export import check_onnx, export_config, export_onnx, script_backbone

SMALL = dict(depth=14, stem_channels=32, base_channels=16)
SIZES = [(1, 3, 64, 64), (2, 3, 96, 72)]


def inputs(shapes=SIZES, seed=5):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for shape in shapes]


@pytest.fixture
def backbone():
    return randomize_(ResNeSt(**SMALL)).eval()


def test_trace_generalises_to_other_sizes(backbone):
    first, second = inputs()
    with torch.no_grad():
        traced = torch.jit.trace(backbone, first)
        assert max_abs_diff(traced(second), backbone(second)) <= 1e-5


@pytest.mark.parametrize('kwargs', [{}, dict(with_cp=True, radix=1, groups=2, avd_first=True)])
def test_script_matches_eager_and_reloads(backbone, kwargs, tmp_path):
    model = randomize_(ResNeSt(**SMALL, **kwargs)).eval() if kwargs else backbone
    scripted = script_backbone(model)
    path = tmp_path / 'resnest.pt'
    torch.jit.save(scripted, str(path))
    reloaded = torch.jit.load(str(path))
    for x in inputs():
        with torch.no_grad():
            expected = model(x)
            assert max_abs_diff(tuple(scripted(x)), expected) <= 1e-5
            assert max_abs_diff(tuple(reloaded(x)), expected) <= 1e-5
    assert 'layer1' in dict(model.named_children())  # the original is left as it was


def test_compile_fullgraph(backbone):
    torch._dynamo.reset()
    compiled = torch.compile(backbone, fullgraph=True, backend='eager', dynamic=True)
    for x in inputs():
        with torch.no_grad():
            assert max_abs_diff(compiled(x), backbone(x)) <= 1e-5


@pytest.mark.slow
def test_compile_inductor(backbone):
    torch._dynamo.reset()
    compiled = torch.compile(backbone, fullgraph=True)
    for x in inputs():
        with torch.no_grad():
            assert max_abs_diff(compiled(x), backbone(x)) <= 1e-4


def test_onnx_dynamic_shapes_match_onnxruntime(backbone, tmp_path):
    onnx = importlib.import_module('onnx')
    path = export_onnx(backbone, tmp_path / 'resnest14.onnx', inputs()[0], opset=17)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version >= 17
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ['batch', '', 'height', 'width']
    assert len(graph.graph.output) == 4
    diffs = check_onnx(path, backbone, inputs())
    assert len(diffs) == 2 and max(diffs) <= 1e-4


def test_export_tool_on_a_backbone_config(tmp_path):
    config = tmp_path / 'resnest14.py'
    config.write_text(
        "custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)\n"
        "model = dict(type='resnest_mm.ResNeSt', depth=14, stem_channels=32, base_channels=16,"
        " out_indices=(1, 3), norm_cfg=dict(type='SyncBN', requires_grad=True))\n")
    diffs = export_config(config, tmp_path / 'out.onnx', shapes=[(1, 3, 64, 64),
                                                                (1, 3, 80, 48)], fuse=True)
    assert (tmp_path / 'out.onnx').is_file()
    assert max(diffs) <= 1e-4


DEEPLAB = """
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py'
custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True, type='resnest_mm.ResNeSt', depth=50, stem_channels=64,
        strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True)))
"""


@pytest.mark.slow
def test_deeplabv3_segmentor_exports(tmp_path):
    """The whole DeepLabV3 (mmseg's config, our S-50 backbone, SyncBN -> BN): trace, compile
    and ONNX with onnxruntime on two sizes."""
    from resnest_mm.build import build_from_config
    from resnest_mm.export import SegmentorLogits

    config = tmp_path / 'deeplabv3_s50.py'
    config.write_text(DEEPLAB)
    model = SegmentorLogits(randomize_(build_from_config(config, part='model'))).eval()
    small, other = inputs([(1, 3, 64, 64), (2, 3, 96, 80)])
    with torch.no_grad():
        expected = model(other)
        assert expected.shape == (2, 19, 96, 80)
        assert max_abs_diff(torch.jit.trace(model, small)(other), expected) <= 1e-4
        torch._dynamo.reset()
        compiled = torch.compile(model, backend='eager', dynamic=True)
        assert max_abs_diff(compiled(other), expected) <= 1e-4
    diffs = export_config(config, tmp_path / 'deeplabv3.onnx', part='model',
                          shapes=[(1, 3, 64, 64), (2, 3, 96, 80)])
    assert max(diffs) <= 1e-4
