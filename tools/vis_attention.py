"""Draw, per stage, a ResNeSt's feature maps and split-attention weights into one PNG.

    python tools/vis_attention.py IMAGE CONFIG [CHECKPOINT] --out PNG [--size 512]

CONFIG is an mm config whose ``model.backbone`` is a ResNeSt (or a backbone-only config);
CHECKPOINT may be a full-model or a backbone checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mmcv

from resnest_mm.apis import build_from_config
from resnest_mm.apis.cli import exit_on_user_error
from resnest_mm.visualization import draw_attention


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('image', help='input image file')
    parser.add_argument('config', help='mm config file')
    parser.add_argument('checkpoint', nargs='?', default=None, help='weights (optional)')
    parser.add_argument('--out', default='work_dirs/vis/attention.png', help='output PNG')
    parser.add_argument('--size', type=int, default=512, help='shorter image side fed in')
    parser.add_argument('--panel', type=int, default=256, help='panel side in pixels')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error('vis_attention.py'):
        if not Path(args.image).is_file():
            raise FileNotFoundError(f'image file {args.image!r} does not exist.')
        image = mmcv.imread(args.image, channel_order='rgb')
        image = mmcv.imrescale(image, (args.size, 100_000))  # shorter side to --size
        backbone = build_from_config(args.config, args.checkpoint, part='backbone')
        _, titles = draw_attention(backbone, image, args.out, panel_size=args.panel)
    print(f'wrote {args.out}: {len(titles)} panels')
    return 0


if __name__ == '__main__':
    sys.exit(main())
