"""DropBlock and stochastic depth: mask statistics, eval/no-op behaviour, placement, schedule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import max_abs_diff, randomize_

from resnest_mm import ResNeSt
from resnest_mm.engine import DropBlockScheduleHook
from resnest_mm.models.drop import DropBlock2d, DropPath, dropblock_gamma

SMALL = dict(depth=14, stem_channels=32, base_channels=16)


def expected_dropblock_keep_ratio(drop_prob, block_size, height, width):
    """Mean over pixels of P(no seed covers the pixel) = (1 - gamma)^(seeds that cover it)."""
    gamma = dropblock_gamma(drop_prob, block_size, height, width)
    seeds = torch.ones(1, 1, height - block_size + 1, width - block_size + 1)
    covering = F.conv2d(F.pad(seeds, [block_size - 1] * 4), torch.ones(1, 1, block_size,
                                                                       block_size))
    return ((1 - gamma) ** covering).mean().item()


@pytest.mark.parametrize('drop_prob,block_size', [(0.1, 3), (0.3, 3), (0.2, 5), (0.2, 1)])
def test_dropblock_keep_ratio_matches_theory(drop_prob, block_size):
    torch.manual_seed(0)
    layer = DropBlock2d(drop_prob, block_size).train()
    x = torch.ones(16, 32, 24, 24)
    keep = layer.keep_mask(x)
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    expected = expected_dropblock_keep_ratio(drop_prob, block_size, 24, 24)
    assert abs(keep.mean().item() - expected) < 0.01
    assert abs(expected - (1 - drop_prob)) < 0.05  # gamma is chosen to drop about drop_prob
    out = layer(x)
    torch.testing.assert_close(out.sum(), x.sum())  # kept values rescaled: same total


def test_dropblock_drops_whole_blocks():
    torch.manual_seed(0)
    keep = DropBlock2d(0.05, 4).train().keep_mask(torch.ones(4, 8, 30, 30))
    dropped = 1 - keep
    # Every dropped pixel lies in a fully dropped 4x4 square: eroding by the block and dilating
    # back gives the same mask.
    eroded = 1 - F.max_pool2d(F.pad(keep, [0, 3, 0, 3], value=1.0), 4, stride=1)
    dilated = F.max_pool2d(F.pad(eroded, [3, 0, 3, 0]), 4, stride=1)
    assert torch.equal(dilated, dropped)


@pytest.mark.parametrize('layer', [DropBlock2d(0.3, 3), DropPath(0.3)], ids=['dropblock', 'path'])
def test_inactive_in_eval_and_noop_at_zero(layer):
    x = torch.randn(4, 8, 10, 10)
    assert layer.eval()(x) is x
    layer.train()
    assert not torch.equal(layer(x), x)
    layer.drop_prob = 0.0
    assert layer(x) is x


def test_drop_path_keep_ratio_and_scale():
    torch.manual_seed(0)
    x = torch.ones(20000, 3, 2, 2)
    out = DropPath(0.3).train()(x)
    per_sample = out.flatten(1)
    kept = (per_sample != 0).all(dim=1)
    assert ((per_sample == 0).all(dim=1) | kept).all()  # whole samples are dropped
    assert abs(kept.float().mean().item() - 0.7) < 0.02
    torch.testing.assert_close(per_sample[kept], torch.full_like(per_sample[kept], 1 / 0.7))


def test_off_by_default_and_parameter_free(image):
    plain = randomize_(ResNeSt(**SMALL))
    regularised = ResNeSt(dropblock=dict(drop_prob=0.2, block_size=3), drop_path_rate=0.2,
                          **SMALL)
    assert not any(isinstance(m, (DropBlock2d, DropPath)) for m in plain.modules())
    regularised.load_state_dict(plain.state_dict(), strict=True)
    assert list(regularised.state_dict()) == list(plain.state_dict())
    plain.eval()
    regularised.eval()
    with torch.no_grad():
        assert max_abs_diff(regularised(image), plain(image)) == 0
    plain.train()
    regularised.train()
    with torch.no_grad():
        assert max_abs_diff(regularised(image), plain(image)) > 1e-3


def test_zero_probabilities_change_nothing_in_training(image):
    plain = randomize_(ResNeSt(**SMALL)).train()
    zero = ResNeSt(dropblock=dict(drop_prob=0.0), **SMALL).train()
    zero.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert max_abs_diff(zero(image), plain(image)) == 0


def test_dropblock_in_stages_3_and_4_and_linear_drop_path():
    model = ResNeSt(depth=26, stem_channels=32, base_channels=16,
                    dropblock=dict(drop_prob=0.1, block_size=3), drop_path_rate=0.35)
    for i, name in enumerate(model.res_layers):
        blocks = list(getattr(model, name))
        has_dropblock = [b.dropblock1 is not None and b.dropblock2 is not None
                         and b.dropblock3 is not None for b in blocks]
        assert has_dropblock == [i >= 2] * len(blocks), name
        for block in blocks:
            if block.dropblock1 is not None:
                assert block.dropblock1.block_size == 3
    rates = [0.0 if b.drop_path is None else b.drop_path.drop_prob
             for name in model.res_layers for b in getattr(model, name)]
    assert rates == pytest.approx([0.35 * i / 7 for i in range(8)])


def test_schedule_hook_ramps_linearly():
    model = ResNeSt(dropblock=dict(drop_prob=0.0), **SMALL)
    hook = DropBlockScheduleHook(drop_prob=0.1, ramp_iters=10)
    seen = []
    for it in (0, 4, 9, 20):
        hook.before_train_iter(SimpleNamespace(model=model, iter=it), batch_idx=it)
        probs = {m.drop_prob for m in model.modules() if isinstance(m, DropBlock2d)}
        assert len(probs) == 1
        seen.append(probs.pop())
    assert seen == pytest.approx([0.01, 0.05, 0.1, 0.1])
    model.set_dropblock_prob(0.03)
    assert {m.drop_prob for m in model.modules() if isinstance(m, DropBlock2d)} == {0.03}


def test_schedule_hook_without_dropblock_fails_clearly():
    hook = DropBlockScheduleHook(drop_prob=0.1)
    with pytest.raises(RuntimeError, match='no DropBlock'):
        hook.before_train_iter(SimpleNamespace(model=ResNeSt(**SMALL), iter=0), batch_idx=0)


@pytest.mark.parametrize('kwargs,match', [
    (dict(drop_path_rate=1.5), 'drop_path_rate=1.5'),
    (dict(dropblock=dict(drop_prob=0.1, size=3)), "unknown keys \\['size'\\]"),
    (dict(dropblock=dict(drop_prob=-0.1)), "dropblock\\['drop_prob'\\]=-0.1"),
    (dict(dropblock=dict(drop_prob=0.1), stage_with_dropblock=(True,)), 'stage_with_dropblock'),
])
def test_bad_regularisation_options_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ResNeSt(**SMALL, **kwargs)
