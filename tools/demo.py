"""The embedded demo: train and evaluate the three ResNeSt-50 models on generated shapes.

    python tools/demo.py [--work-dir work_dirs/demo] [--data-root data] [--models ...] [--check]

Generates the synthetic datasets under ``--data-root`` when absent, then for Faster R-CNN,
Cascade Mask R-CNN and DeepLabV3 (S-50, from scratch, ``configs/demo/``): trains a short run,
evaluates (COCO bbox/segm AP, mIoU), saves pictures of the predictions and prints the metrics
and where the pictures are. ``--check`` runs the learning check instead: Faster R-CNN and
DeepLabV3 overfit a handful of images and must reach bbox AP50 >= 0.9 and mIoU >= 0.7.
"""

import argparse
import sys
import time

from resnest_mm.apis.demo import CHECKS, DEMOS, run_demo, run_learning_check


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo', help='runs, logs and pictures')
    parser.add_argument('--data-root', default='data', help='where the datasets are generated')
    parser.add_argument('--models', nargs='+', choices=list(DEMOS),
                        help='which models to run (default: all of the demo or of the check)')
    parser.add_argument('--check', action='store_true',
                        help='run the learning check (overfit a handful of images) instead')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.check and not set(args.models or ()) <= set(CHECKS):
        sys.exit(f'--check runs {", ".join(CHECKS)}; got --models {" ".join(args.models)}')
    start = time.perf_counter()
    if args.check:
        passed = run_learning_check(args.work_dir, args.data_root, args.models)
    else:
        run_demo(args.work_dir, args.data_root, args.models or list(DEMOS))
        passed = True
    print(f'\nTotal time: {time.perf_counter() - start:.0f} s')
    if not passed:
        sys.exit('learning check failed')


if __name__ == '__main__':
    main()
