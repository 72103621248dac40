"""Convert ResNeSt weights of any published layout to the OpenMMLab backbone layout (or back).

    python tools/convert_weights.py resnest50-528c19ca.pth work_dirs/resnest50_mm.pth
    python tools/convert_weights.py resnest50 work_dirs/resnest50_mm.pth   # short name
    python tools/convert_weights.py work_dirs/resnest50_mm-1a2b3c4d.pth back.pth --to official

The output name gets the first 8 hex digits of the file's SHA-256 (``resnest50_mm-1a2b3c4d.pth``);
everything else is :func:`resnest_mm.pretrained.convert_checkpoint`.
"""

from __future__ import annotations

import argparse

from resnest_mm.apis.cli import exit_on_user_error
from resnest_mm.pretrained import convert_checkpoint, known_names

# What a wrong input file ends in (a bad layout, a damaged or unsafe file, a missing one).
CONVERT_ERRORS = (FileNotFoundError, ValueError, TypeError, RuntimeError)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help=f'input file, URL or short name ({known_names()})')
    parser.add_argument('dst', help='output path; "-<sha256[:8]>" is added before the suffix')
    parser.add_argument('--to', choices=('openmmlab', 'official'), default='openmmlab',
                        help='output layout (default: openmmlab)')
    parser.add_argument('--prefix', default=None,
                        help="backbone key prefix in the input (default: detected)")
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with exit_on_user_error('convert_weights.py', CONVERT_ERRORS):
        summary = convert_checkpoint(args.src, args.dst, to=args.to, prefix=args.prefix,
                                     progress=not args.quiet)
    print(summary)


if __name__ == '__main__':
    main()
