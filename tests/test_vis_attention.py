"""Attention pictures: hooks collect stage features and attention weights; one PNG per image."""

from __future__ import annotations

import mmcv
import numpy as np
import pytest
import torch
from helpers import load_tool, randomize_

from resnest_mm import ResNeSt
from resnest_mm.visualization import collect_stage_activations, draw_attention, to_input_tensor

SMALL = dict(depth=14, stem_channels=32, base_channels=16)


def random_image(height=64, width=48):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize('radix', [1, 2, 4])
def test_collects_features_and_normalised_attention(radix):
    model = randomize_(ResNeSt(radix=radix, **SMALL)).train()
    stages = collect_stage_activations(model, to_input_tensor(random_image()))
    assert model.training  # the mode is restored
    assert [s.name for s in stages] == ['layer1', 'layer2', 'layer3', 'layer4']
    for i, stage in enumerate(stages):
        width = 16 * 2**i
        assert stage.features.shape[0] == width * 4
        assert tuple(stage.attention.shape) == (radix, width)
        if radix > 1:  # softmax over the splits of each channel
            torch.testing.assert_close(stage.attention.sum(0), torch.ones(width))
        else:  # sigmoid gate
            assert ((stage.attention > 0) & (stage.attention < 1)).all()


def test_draws_one_png_with_two_panels_per_stage(tmp_path):
    model = randomize_(ResNeSt(**SMALL))
    out = tmp_path / 'vis' / 'attention.png'
    canvas, titles = draw_attention(model, random_image(), out, panel_size=64)
    assert canvas.shape == (4 * 64, 2 * 64, 3)
    assert len(titles) == 8 and titles[1].startswith('layer1 attention (2, 16)')
    written = mmcv.imread(str(out), channel_order='rgb')
    assert written.shape == canvas.shape
    assert written.std() > 0


def test_tool_reads_image_and_config(tmp_path):
    tool = load_tool('vis_attention')
    image = tmp_path / 'in.png'
    mmcv.imwrite(random_image(80, 120), str(image))
    config = tmp_path / 'cfg.py'
    config.write_text("model = dict(backbone=dict(type='resnest_mm.ResNeSt', depth=14, "
                      "stem_channels=32, base_channels=16))\n")
    out = tmp_path / 'att.png'
    assert tool.main([str(image), str(config), '--out', str(out), '--size', '64',
                      '--panel', '32']) == 0
    assert mmcv.imread(str(out)).shape == (4 * 32, 2 * 32, 3)
    with pytest.raises(SystemExit, match=r"^vis_attention\.py: error: image file '.*missing\.png' "
                                         r"does not exist\.$"):
        tool.main([str(tmp_path / 'missing.png'), str(config)])
