"""Train a detector or segmentor from a config (mmdet or mmseg, from its default_scope).

    python tools/train.py configs/faster_rcnn_resnest50_fpn.py [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--channels-last] [--auto-scale-lr] [--cfg-options key=value ...]
        [--launcher none|pytorch|slurm|mpi] [--preempt-signals SIGTERM [SIGUSR1 ...]]
        [--allow-shared-work-dir]

On a preemption signal (SIGTERM by default) the run saves at the current iteration and exits
with status 75; --resume then continues it exactly. A save that fails (a full disk) stops the
run with one line and status 74. A second run on a work dir in use is refused (the lock file
.resnest_mm.lock in the work dir), unless --allow-shared-work-dir.

Several processes: tools/dist_train.sh CONFIG GPUS [args]; on a machine without CUDA the
processes use gloo and SyncBN runs as resnest_mm.CPUSyncBN (statistics synchronised over gloo).
"""

import argparse

from resnest_mm.apis import build_train_config, prepare_run, run_train
from resnest_mm.apis.cli import exit_on_user_error
from resnest_mm.apis.distributed import add_run_arguments, shutdown_distributed


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or without CKPT from the newest checkpoint in the work dir '
             'that loads')
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision: float16 with loss scaling on a GPU, bfloat16 autocast on the CPU')
    parser.add_argument('--channels-last', action='store_true',
                        help='model and input images in channels_last memory format')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by the actual batch size (auto_scale_lr in the config)')
    parser.add_argument(
        '--preempt-signals', nargs='+', default=['SIGTERM'], metavar='SIGNAL',
        help='on these signals save at the current iteration and exit with status 75 '
             '(SIGTERM, SIGUSR1, SIGUSR2; default: SIGTERM)')
    parser.add_argument(
        '--allow-shared-work-dir', action='store_true',
        help='run even if another training run holds the work dir (the runs overwrite each '
             "other's checkpoints)")
    add_run_arguments(parser, 'train_dataloader.dataset.data_root')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    with exit_on_user_error('train.py'):  # set-up: wrong path, missing dataset, bad option
        cfg = build_train_config(
            args.config, work_dir=args.work_dir, resume=args.resume, amp=args.amp,
            auto_scale_lr=args.auto_scale_lr, cfg_options=args.cfg_options,
            launcher=args.launcher, preempt_signals=args.preempt_signals,
            channels_last=args.channels_last,
            allow_shared_work_dir=args.allow_shared_work_dir)
        prepare_run(cfg, 'train')
    run_train(cfg)
    shutdown_distributed()


if __name__ == '__main__':
    main()
