"""The embedded demo: three ResNeSt-50 models learn the generated shapes on this machine.

    python tools/demo.py [--work-dir work_dirs/demo] [--data-root data] [--models ...]

Generates the scenes under ``--data-root`` (when absent), pretrains the S-50 backbone on crops
of them, fine-tunes Faster R-CNN, Cascade Mask R-CNN and DeepLabV3 from it (``configs/demo/``),
evaluates each on the held-out val split, and prints one table against the thresholds (also in
``<work-dir>/summary.json``), the pictures (``<work-dir>/overview.png``: ground truth next to
predictions) and the ``tools/infer.py`` commands for the trained checkpoints.
"""

import argparse

from resnest_mm.apis.demo import DEMOS, run_demo


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo', help='runs, logs and pictures')
    parser.add_argument('--data-root', default='data', help='where the scenes are generated')
    parser.add_argument('--models', nargs='+', choices=list(DEMOS),
                        help='which models to run (default: all three)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    run_demo(args.work_dir, args.data_root, args.models)


if __name__ == '__main__':
    main()
