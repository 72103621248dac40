"""Export: torch.jit.trace / script, torch.compile and ONNX (checked with onnxruntime)."""

from __future__ import annotations

import copy
import importlib
import importlib.util

import pytest
import torch
from helpers import load_tool, max_abs_diff, randomize_
from mmengine.registry import MODELS
from tiny import FASTER_RCNN
from torch import nn

from resnest_mm import ResNeSt, compat
from resnest_mm.apis import export_config
from resnest_mm.deploy import check_onnx, export_onnx

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


SCRIPT_CASES = [
    {},
    dict(with_cp=True, radix=1, groups=2, avd_first=True, out_indices=(1, 3)),
    dict(norm_cfg=dict(type='GN', num_groups=4), num_stages=2, strides=(1, 2),
         dilations=(1, 1), out_indices=(0, 1)),
    dict(dropblock=dict(drop_prob=0.2, block_size=3), drop_path_rate=0.2),
]


@pytest.mark.parametrize('kwargs', SCRIPT_CASES)
def test_script_compiles_the_backbone_itself(kwargs, tmp_path):
    model = randomize_(ResNeSt(**SMALL, **kwargs)).eval()
    classes = [type(m) for m in model.modules()]
    scripted = torch.jit.script(model)
    assert isinstance(scripted, torch.jit.ScriptModule)
    # compiled from the model's own classes and forwards, not from copies
    parts = dict(scripted.named_modules())
    assert [parts[name].original_name for name in ('', 'layer1.0', 'layer1.0.conv2')] == [
        'ResNeSt', 'ResNeStBottleneck', 'SplitAttentionConv2d']
    assert [type(m) for m in model.modules()] == classes  # the eager model is left alone
    assert list(scripted.state_dict()) == list(model.state_dict())
    path = tmp_path / 'resnest.pt'
    torch.jit.save(scripted, str(path))
    reloaded = torch.jit.load(str(path))
    for x in inputs():
        with torch.no_grad():
            expected = model(x)
            assert max_abs_diff(tuple(scripted(x)), expected) <= 1e-5
            assert max_abs_diff(tuple(reloaded(x)), expected) <= 1e-5


def test_scripted_backbone_trains_like_eager_and_loads_mm_checkpoints():
    model = randomize_(ResNeSt(**SMALL)).train()
    twin = copy.deepcopy(model)
    scripted = torch.jit.script(twin).train()
    x = inputs()[1]
    expected, actual = model(x), scripted(x)
    assert max_abs_diff(tuple(actual), expected) <= 1e-5
    sum(out.square().sum() for out in expected).backward()
    sum(out.square().sum() for out in actual).backward()
    for (name, ours), theirs in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert torch.allclose(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6), name
    other = randomize_(ResNeSt(**SMALL), seed=3).eval()
    scripted.eval().load_state_dict(other.state_dict())
    with torch.no_grad():
        assert max_abs_diff(tuple(scripted(x)), other(x)) <= 1e-5


@pytest.mark.parametrize('part', ['block', 'split_attention'])
def test_script_compiles_the_parts(part):
    model = randomize_(ResNeSt(**SMALL)).eval()
    module = model.layer2[0] if part == 'block' else model.layer2[0].conv2
    first_conv = module.conv1 if part == 'block' else module.conv
    x = torch.randn(2, first_conv.in_channels, 12, 12)
    with torch.no_grad():
        assert max_abs_diff(torch.jit.script(module)(x), module(x)) <= 1e-5


def test_script_asks_to_revert_sync_batchnorm_first():
    from mmengine.model import revert_sync_batchnorm

    model = randomize_(ResNeSt(**SMALL, norm_cfg=dict(type='SyncBN'))).eval()
    with pytest.raises(ValueError, match=r'SyncBatchNorm.*revert_sync_batchnorm'):
        torch.jit.script(model)
    scripted = torch.jit.script(revert_sync_batchnorm(model))
    x = inputs()[0]
    with torch.no_grad():
        assert max_abs_diff(tuple(scripted(x)), model(x)) <= 1e-5


def test_script_names_an_unsupported_norm():
    class FilterResponseNorm(nn.BatchNorm2d):
        _abbr_ = 'frn'

    MODELS.register_module('TestFRN', module=FilterResponseNorm, force=True)
    model = ResNeSt(**SMALL, norm_cfg=dict(type='TestFRN'))
    expected = r"norm1_name='frn1' is invalid.*\('bn', 'gn', 'in', 'ln'\)"
    with pytest.raises(ValueError, match=expected):
        torch.jit.script(model)


def test_torch_export_with_dynamic_batch_and_sizes_in_steps_of_32(backbone):
    if compat.torch_version() < (2, 2):  # one line naming the feature and the torch it needs
        with pytest.raises(compat.TorchTooOldError, match=r'^torch\.export with dynamic '
                           r'shapes needs torch >= 2\.2; this is torch 2\.1'):
            compat.export_dim('batch', min=1, max=64)
        return
    batch = compat.export_dim('batch', min=1, max=64)
    height, width = compat.export_dim('h32', min=1, max=64), compat.export_dim('w32', 1, 64)
    program = torch.export.export(
        backbone, tuple(inputs([(2, 3, 64, 96)])),
        dynamic_shapes=({0: batch, 2: 32 * height, 3: 32 * width},))
    for x in inputs([(3, 3, 96, 64), (1, 3, 160, 224)], seed=7):
        with torch.no_grad():
            assert max_abs_diff(program.module()(x), backbone(x)) <= 1e-5


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


def test_export_tool_fuse_matches_the_unfused_model(tmp_path):
    """--fuse on trained-looking weights (random BN statistics and affine parameters, SyncBN
    built as BN): the ONNX model of the folded backbone gives the unfolded model's outputs."""
    kwargs = dict(SMALL, out_indices=(1, 3))
    config = tmp_path / 'resnest14.py'
    config.write_text(
        "custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)\n"
        "model = dict(type='resnest_mm.ResNeSt', depth=14, stem_channels=32, base_channels=16,"
        " out_indices=(1, 3), norm_cfg=dict(type='SyncBN', requires_grad=True))\n")
    unfused = randomize_(ResNeSt(**kwargs), seed=2).eval()
    checkpoint = tmp_path / 'trained.pth'
    torch.save({'state_dict': unfused.state_dict()}, checkpoint)
    out = tmp_path / 'out.onnx'
    diffs = export_config(config, out, str(checkpoint), shapes=[(1, 3, 64, 64), (1, 3, 80, 48)],
                          fuse=True)
    assert max(diffs) <= 1e-4
    assert max(check_onnx(out, unfused, inputs([(2, 3, 96, 64)], seed=9))) <= 1e-4


def deeplab_config(backbone: str, heads: str = '') -> str:
    """mmseg's DeepLabV3 config with our backbone at output stride 8 (SyncBN, as in mmseg)."""
    return f"""
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py'
custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True, type='resnest_mm.ResNeSt', {backbone},
        strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    {heads})
"""


DEEPLAB = deeplab_config('depth=50, stem_channels=64')
# S-14 with narrow stages (stage 3 / 4: 128 / 256 channels) and narrow heads, for quick tests.
SMALL_DEEPLAB = deeplab_config(
    'depth=14, stem_channels=16, base_channels=8',
    'decode_head=dict(in_channels=256, channels=16), '
    'auxiliary_head=dict(in_channels=128, channels=8)')


@pytest.mark.slow
def test_deeplabv3_segmentor_exports(tmp_path):
    """The whole DeepLabV3 (mmseg's config, our S-50 backbone, SyncBN -> BN): trace, script,
    compile and ONNX with onnxruntime on two sizes."""
    from resnest_mm.apis import build_from_config
    from resnest_mm.deploy import SegmentorLogits

    config = tmp_path / 'deeplabv3_s50.py'
    config.write_text(DEEPLAB)
    model = SegmentorLogits(randomize_(build_from_config(config, part='model'))).eval()
    small, other = inputs([(1, 3, 64, 64), (2, 3, 96, 80)])
    with torch.no_grad():
        expected = model(other)
        assert expected.shape == (2, 19, 96, 80)
        assert max_abs_diff(torch.jit.trace(model, small)(other), expected) <= 1e-4
        assert max_abs_diff(torch.jit.script(model)(other), expected) <= 1e-4
        torch._dynamo.reset()
        compiled = torch.compile(model, backend='eager', dynamic=True)
        assert max_abs_diff(compiled(other), expected) <= 1e-4
    diffs = export_config(config, tmp_path / 'deeplabv3.onnx', part='model',
                          shapes=[(1, 3, 64, 64), (2, 3, 96, 80)])
    assert max(diffs) <= 1e-4


@pytest.fixture
def small_deeplab(tmp_path):
    from resnest_mm.apis import build_from_config

    config = tmp_path / 'deeplabv3_s14.py'
    config.write_text(SMALL_DEEPLAB)
    return randomize_(build_from_config(config, part='model')).eval()  # SyncBN -> BN


def test_script_compiles_a_deeplabv3_segmentor(small_deeplab, tmp_path):
    from resnest_mm.deploy import SegmentorLogits

    model = SegmentorLogits(small_deeplab).eval()
    classes = [type(m) for m in model.modules()]
    scripted = torch.jit.script(model)
    assert [type(m) for m in model.modules()] == classes
    dropped = set(model.state_dict()) - set(scripted.state_dict())
    assert dropped and all(k.startswith('segmentor.auxiliary_head.') for k in dropped)
    path = tmp_path / 'deeplabv3.pt'
    torch.jit.save(scripted, str(path))
    reloaded = torch.jit.load(str(path))
    for x in inputs([(1, 3, 64, 64), (2, 3, 96, 80)]):
        with torch.no_grad():
            expected = model(x)
            assert expected.shape == (x.size(0), 19, *x.shape[2:])
            assert max_abs_diff(scripted(x), expected) <= 1e-5
            assert max_abs_diff(reloaded(x), expected) <= 1e-5


def test_script_of_a_segmentor_names_what_it_cannot_compile(small_deeplab):
    from mmengine.model import convert_sync_batchnorm

    from resnest_mm.deploy import SegmentorLogits

    small_deeplab.decode_head = small_deeplab.auxiliary_head
    with pytest.raises(ValueError, match=r"decode_head='FCNHead'.*ASPPHead"):
        torch.jit.script(SegmentorLogits(small_deeplab))
    with pytest.raises(ValueError, match=r'SyncBatchNorm.*revert_sync_batchnorm'):
        torch.jit.script(SegmentorLogits(convert_sync_batchnorm(small_deeplab)))


def test_build_from_config_loads_checkpoints_strictly(small_deeplab, tmp_path):
    from resnest_mm.apis import build_from_config
    from resnest_mm.pretrained import WeightMismatchError

    config = tmp_path / 'deeplabv3_s14.py'
    config.write_text(SMALL_DEEPLAB)
    state = small_deeplab.state_dict()
    whole = tmp_path / 'whole.pth'
    torch.save({'state_dict': state, 'meta': {'iter': 1}}, whole)

    model = build_from_config(config, str(whole), part='model')
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    backbone = build_from_config(config, str(whole), part='backbone')
    assert all(torch.equal(v, state[f'backbone.{k}']) for k, v in backbone.state_dict().items())

    half = tmp_path / 'half.pth'
    torch.save({k: v for k, v in state.items() if 'decode_head' not in k}, half)
    with pytest.raises(ValueError, match=r"half\.pth.*model.*decode_head"):
        build_from_config(config, str(half), part='model')
    backbone_half = tmp_path / 'backbone_half.pth'
    torch.save({k: v for k, v in state.items() if 'layer4' not in k}, backbone_half)
    with pytest.raises(WeightMismatchError, match='layer4'):
        build_from_config(config, str(backbone_half), part='backbone')



def _export_tool():
    return load_tool('export_onnx')


BACKBONE_CONFIG = (
    "custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)\n"
    "model = dict(type='resnest_mm.ResNeSt', depth=14, stem_channels=32, base_channels=16)\n")


def test_export_onnx_command_line(tmp_path, capsys):
    config, checkpoint = tmp_path / 'resnest14.py', tmp_path / 'weights.pth'
    config.write_text(BACKBONE_CONFIG)
    model = randomize_(ResNeSt(**SMALL), seed=4).eval()
    torch.save(model.state_dict(), checkpoint)
    out = tmp_path / 'cli' / 'resnest14.onnx'
    argv = [str(config), str(checkpoint), '--out', str(out), '--fuse',
            '--shape', '1', '3', '64', '64', '--shape', '2', '3', '32', '48']
    assert _export_tool().main(argv) == 0
    printed = capsys.readouterr().out
    assert '(1, 3, 64, 64): onnxruntime vs PyTorch max abs diff' in printed
    assert '(2, 3, 32, 48): onnxruntime vs PyTorch max abs diff' in printed
    assert f'wrote {out}; OK (atol 0.0001)' in printed
    assert max(check_onnx(out, model, inputs())) <= 1e-4
    assert _export_tool().main([*argv, '--atol', '-1']) == 1  # a difference over --atol fails
    assert 'FAILED (atol -1.0)' in capsys.readouterr().out


def test_export_onnx_refuses_part_model_for_a_detector(tmp_path):
    out = tmp_path / 'detector.onnx'
    with pytest.raises(SystemExit) as stop:
        _export_tool().main([str(FASTER_RCNN), '--part', 'model', '--out', str(out)])
    message = stop.value.code
    assert isinstance(message, str) and message.startswith('export_onnx.py: error: ')
    assert "part='model' needs an MMSegmentation EncoderDecoder" in message
    assert 'FasterRCNN' in message and "use part='backbone' for detectors" in message
    assert not out.exists()
