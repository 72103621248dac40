"""Behaviour of the backbone's options: freezing, norm_eval, out_indices, with_cp, SyncBN and GN
(as mmdet's), size."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from helpers import max_abs_diff, randomize_
from torch.nn.modules.batchnorm import _BatchNorm

from resnest_mm import ResNeSt

mmdet_backbones = importlib.import_module('mmdet.models.backbones')
SMALL = dict(depth=14, stem_channels=32, base_channels=16)


def training_step(model, x):
    model.train()
    loss = sum(out.mean() for out in model(x))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if trainable:  # with everything frozen, the forward pass alone must change nothing
        optimizer = torch.optim.SGD(trainable, lr=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages_keep_weights_and_statistics(frozen_stages, image):
    model = randomize_(ResNeSt(frozen_stages=frozen_stages, **SMALL))
    frozen = ['stem'] * (frozen_stages >= 0) + [f'layer{i}' for i in range(1, frozen_stages + 1)]
    trainable = [n for n in ['stem', 'layer1', 'layer2', 'layer3', 'layer4'] if n not in frozen]
    before = {name: snapshot(getattr(model, name)) for name in frozen + trainable}

    model.train()
    for name in frozen:
        module = getattr(model, name)
        assert all(not p.requires_grad for p in module.parameters()), name
        assert all(not m.training for m in module.modules()), name
    for name in trainable:
        assert all(p.requires_grad for p in getattr(model, name).parameters()), name

    training_step(model, image)
    for name in frozen:
        after = getattr(model, name).state_dict()
        assert all(torch.equal(after[k], v) for k, v in before[name].items()), name
    for name in trainable:
        after = getattr(model, name).state_dict()
        assert not all(torch.equal(after[k], v) for k, v in before[name].items()), name


def test_norm_eval_keeps_running_statistics(image):
    model = randomize_(ResNeSt(norm_eval=True, **SMALL))
    model.train()
    assert model.training
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    before = snapshot(model)
    with torch.no_grad():
        model(image)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if 'running' in k)


def test_without_norm_eval_batch_statistics_are_used(image):
    model = randomize_(ResNeSt(**SMALL))
    model.train()
    before = snapshot(model)
    with torch.no_grad():
        model(image)
    assert not torch.equal(model.state_dict()['stem.1.running_mean'], before['stem.1.running_mean'])


@pytest.mark.parametrize('num_stages,out_indices', [(4, (1, 3)), (4, (0,)), (3, (0, 1, 2))])
def test_out_indices(num_stages, out_indices, image):
    model = ResNeSt(
        num_stages=num_stages, out_indices=out_indices, strides=(1, 2, 2, 2)[:num_stages],
        dilations=(1,) * num_stages, **SMALL).eval()
    outs = model(image)
    assert [o.shape[1] for o in outs] == [16 * 4 * 2**i for i in out_indices]
    assert [o.shape[-1] for o in outs] == [64 // 4 // 2**i for i in out_indices]
    assert not hasattr(model, f'layer{num_stages + 1}')


def test_output_stride_8_and_16(image):
    two_blocks = dict(SMALL, depth=26)
    os8 = ResNeSt(
        strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True, **two_blocks)
    os16 = ResNeSt(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), **two_blocks)
    assert [o.shape[-1] for o in os8.eval()(image)] == [16, 8, 8, 8]
    assert [o.shape[-1] for o in os16.eval()(image)] == [16, 8, 4, 4]
    assert os8.layer3[0].conv2.conv.dilation == (1, 1)  # contracted first block
    assert os8.layer4[0].conv2.conv.dilation == (2, 2)
    assert os8.layer4[1].conv2.conv.dilation == (4, 4)


def test_multi_grid_sets_last_stage_dilations():
    model = ResNeSt(depth=50, stem_channels=32, base_channels=8, strides=(1, 2, 1, 1),
                    dilations=(1, 1, 2, 4), multi_grid=(1, 2, 4))
    assert [b.conv2.conv.dilation[0] for b in model.layer4] == [1, 2, 4]


def test_with_cp_gives_same_outputs_and_gradients(image):
    plain = randomize_(ResNeSt(**SMALL))
    checkpointed = ResNeSt(with_cp=True, **SMALL)
    checkpointed.load_state_dict(plain.state_dict())
    results = []
    for model in (plain, checkpointed):
        model.train()
        x = image.clone().requires_grad_(True)
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
        results.append((outs, x.grad, {k: p.grad for k, p in model.named_parameters()}))
    (outs_a, xg_a, grads_a), (outs_b, xg_b, grads_b) = results
    assert max_abs_diff(outs_a, outs_b) <= 1e-6
    assert max_abs_diff(xg_a, xg_b) <= 1e-6
    assert all(max_abs_diff(grads_a[k], grads_b[k]) <= 1e-6 for k in grads_a)


# MMDetection's ResNeSt starts at depth 50; narrow stages keep it quick.
MMDET_SMALL = dict(depth=50, stem_channels=16, base_channels=8, norm_eval=False)
NORM_CASES = {
    'SyncBN': (dict(type='SyncBN', requires_grad=True), torch.nn.SyncBatchNorm),
    'GN': (dict(type='GN', num_groups=4, requires_grad=True), torch.nn.GroupNorm),
}


def norm_layers(model: torch.nn.Module) -> dict[str, type]:
    return {name: type(m) for name, m in model.named_modules()
            if isinstance(m, (_BatchNorm, torch.nn.GroupNorm))}


@pytest.mark.parametrize('norm', NORM_CASES)
def test_norm_cfg_builds_mmdets_norms_and_outputs_in_one_cpu_process(norm, image):
    """SyncBN (torch's, in one process) and GN: the norm layers, their names, the outputs in
    train and eval mode and the gradients equal mmdet's ResNeSt with that norm_cfg."""
    norm_cfg, norm_type = NORM_CASES[norm]
    reference = randomize_(mmdet_backbones.ResNeSt(norm_cfg=norm_cfg, **MMDET_SMALL))
    ours = ResNeSt(norm_cfg=norm_cfg, **MMDET_SMALL)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert norm_layers(ours) == norm_layers(reference)
    assert norm_layers(ours)
    assert all(issubclass(cls, norm_type) for cls in norm_layers(ours).values())
    for model in (reference, ours):
        model.train()
        sum(out.square().mean() for out in model(image)).backward()
    theirs = dict(reference.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, theirs[name].grad, rtol=1e-4, atol=1e-5, msg=name)
    assert max_abs_diff(tuple(ours.state_dict().values()),
                        tuple(reference.state_dict().values())) <= 1e-6  # running statistics
    ours.eval()
    reference.eval()  # mmdet's train() returns None
    with torch.no_grad():
        assert max_abs_diff(ours(image), reference(image)) <= 1e-5


def test_s50_backbone_has_published_parameter_count():
    model = ResNeSt(depth=50, stem_channels=64)
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6, 2) == 25.43  # ResNeSt-50 without classifier, as published


def test_default_init_zeroes_last_norm_and_is_kaiming():
    model = ResNeSt(**SMALL)
    model.init_weights()
    block = model.layer2[0]
    assert torch.count_nonzero(block.norm3.weight) == 0
    assert torch.all(block.norm1.weight == 1)
    no_zero_init = ResNeSt(zero_init_residual=False, **SMALL)
    no_zero_init.init_weights()
    assert torch.all(no_zero_init.layer2[0].norm3.weight == 1)


def test_frozen_stages_survive_deepcopy_and_train_toggle():
    model = ResNeSt(frozen_stages=1, **SMALL)
    clone = copy.deepcopy(model).train().eval().train()
    assert not clone.stem[1].training and not clone.layer1[0].norm1.training
    assert clone.layer2[0].norm1.training


def test_one_depth_table_serves_backbone_checkpoints_and_benchmark():
    from resnest_mm import benchmark
    from resnest_mm.models.arch import STAGE_BLOCKS
    from resnest_mm.pretrained import likely_cause

    assert ResNeSt.arch_settings is STAGE_BLOCKS
    assert all(STAGE_BLOCKS[d] == b for d, b in benchmark.SHALLOW_STAGE_BLOCKS.items())
    tiny = dict(stem_channels=16, base_channels=8)
    cause = likely_cause(ResNeSt(depth=26, **tiny).state_dict(),
                         ResNeSt(depth=14, **tiny).state_dict())
    assert '(2, 2, 2, 2)' in cause and 'depth=26' in cause
