"""Export a ResNeSt backbone (or an MMSegmentation segmentor) to ONNX and check it.

    python tools/export_onnx.py CONFIG [CHECKPOINT] [--part backbone|model] [--out FILE]
        [--shape B C H W] [--shape ...] [--opset 17] [--fuse]

The ONNX model has dynamic batch, height and width. It is run with onnxruntime on every
``--shape`` and compared with PyTorch; the exit status is 1 if a difference exceeds --atol.
"""

from __future__ import annotations

import argparse
import sys

from resnest_mm.apis import export_config
from resnest_mm.apis.cli import exit_on_user_error


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='mm config file')
    parser.add_argument('checkpoint', nargs='?', default=None, help='weights (optional)')
    parser.add_argument('--part', choices=('backbone', 'model'), default='backbone',
                        help="'backbone': stage outputs; 'model': a segmentor's logits")
    parser.add_argument('--out', default='work_dirs/export/model.onnx', help='ONNX file')
    parser.add_argument('--shape', type=int, nargs=4, action='append', metavar=('B', 'C', 'H', 'W'),
                        help='input shape to check (repeatable; the first is traced)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--fuse', action='store_true', help='fold BatchNorm first')
    parser.add_argument('--atol', type=float, default=1e-4)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    shapes = args.shape or [(1, 3, 256, 256), (2, 3, 320, 192)]
    with exit_on_user_error('export_onnx.py'):  # wrong path, weights or --part: one line
        diffs = export_config(args.config, args.out, args.checkpoint, args.part, shapes,
                              args.opset, args.fuse)
    for shape, diff in zip(shapes, diffs, strict=True):
        print(f'{tuple(shape)}: onnxruntime vs PyTorch max abs diff {diff:.3g}')
    ok = max(diffs) <= args.atol
    print(f'wrote {args.out}; {"OK" if ok else "FAILED"} (atol {args.atol})')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
