"""Draw and save a trained model's predictions for an image or a folder of images.

    python tools/infer.py IMAGE_OR_FOLDER CONFIG CHECKPOINT [--out-dir DIR] [--score-thr 0.3]
        [--compile]

Uses MMDetection's DetInferencer or MMSegmentation's MMSegInferencer, chosen by the config's
``default_scope``. Pictures go to ``DIR/vis/``, predictions to ``DIR/preds/`` (mmdet, JSON)
or ``DIR/pred/`` (mmseg, label PNGs). ``--compile``: the backbone, neck and decode head
compiled with inductor (pays for folders of many images; see docs/benchmarks.md).
``make demo`` prints this command for its checkpoints.
"""

import argparse
import sys

from resnest_mm.apis import USER_ERRORS
from resnest_mm.apis.inference import infer


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='the model config (mmdet or mmseg)')
    parser.add_argument('checkpoint', help='the trained weights')
    parser.add_argument('--out-dir', default='outputs', help='where pictures and predictions go')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='boxes below this score are not drawn (detectors)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--compile', action='store_true',
                        help='compile the backbone, neck and decode head (torch.compile); off '
                             'by default')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        files = infer(args.inputs, args.config, args.checkpoint, args.out_dir,
                      args.score_thr, args.device, compile=args.compile)
    except USER_ERRORS as error:
        sys.exit(f'infer.py: error: {error}')
    pictures = [f for f in files if f.parent.name == 'vis']
    print(f'{len(pictures)} pictures in {args.out_dir}/vis, {len(files) - len(pictures)} '
          f'prediction files')


if __name__ == '__main__':
    main()
