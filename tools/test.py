"""Evaluate a checkpoint with a config (mmdet or mmseg, from its default_scope).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE|DIR] [--show-dir DIR]
        [--tta] [--amp] [--channels-last] [--compile] [--cfg-options key=value ...]
        [--launcher none|pytorch|slurm|mpi]

--compile compiles the backbone and neck (a segmentor's decode head too) with inductor
(resnest_mm.deploy.compile_model); its caches persist in $TORCHINDUCTOR_CACHE_DIR
(default ~/.cache/resnest_mm/inductor).

Several processes: tools/dist_test.sh CONFIG CHECKPOINT GPUS [args].
"""

import argparse

from resnest_mm.apis import build_test_config, prepare_run, run_test
from resnest_mm.apis.cli import exit_on_user_error
from resnest_mm.apis.distributed import add_run_arguments, shutdown_distributed
from resnest_mm.deploy import add_compile_hook, check_compiler


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a detector or segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and metrics go')
    parser.add_argument(
        '--out', help='mmdet: .pkl file for the raw predictions; mmseg: folder for label PNGs')
    parser.add_argument(
        '--show-dir', help='folder, under <work-dir>/<timestamp>/, for prediction pictures')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: float16 on a GPU, bfloat16 autocast on the CPU')
    parser.add_argument('--channels-last', action='store_true',
                        help='model and input images in channels_last memory format')
    parser.add_argument('--compile', action='store_true',
                        help='compile the backbone, neck and decode head (torch.compile, '
                             'dynamic shapes, freezing); off by default')
    add_run_arguments(parser, 'test_dataloader.dataset.data_root')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    with exit_on_user_error('test.py'):  # set-up: wrong path, missing dataset, bad option
        cfg = build_test_config(
            args.config, args.checkpoint, work_dir=args.work_dir, out=args.out,
            show_dir=args.show_dir, tta=args.tta, cfg_options=args.cfg_options,
            launcher=args.launcher, amp=args.amp, channels_last=args.channels_last)
        prepare_run(cfg, 'test')
        if args.compile:
            check_compiler()  # a machine that cannot compile: one line, before any work
            add_compile_hook(cfg)
    run_test(cfg)
    shutdown_distributed()


if __name__ == '__main__':
    main()
