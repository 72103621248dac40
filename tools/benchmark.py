"""Benchmark resnest_mm's ResNeSt against MMDetection's ResNeSt and ResNet (or two detectors).

Examples:
    python tools/benchmark.py                       # S-50, batch 2, 512x512, CPU, 2 threads
    python tools/benchmark.py --device cuda --amp --memory-format channels_last --batch 32 \
        --size 224
    python tools/benchmark.py --amp --channels-last # CPU: bf16 autocast, channels_last
    python tools/benchmark.py --detector            # one Faster R-CNN iteration, ours vs mmdet
    python tools/benchmark.py --compile --reference none   # + compiled inference of both
    python tools/benchmark.py --detector --compile --inference-only --batch 1 --size 800 1216
    python tools/benchmark.py --segmentor --compile # DeepLabV3 S-50 inference, ours vs mmseg

Prints a table and writes ``<out-dir>/<name>.json`` and ``<out-dir>/<name>.png``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from resnest_mm import benchmark


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--depth', type=int, default=50)
    parser.add_argument('--batch', type=int, default=None,
                        help='images per batch; default 2 (1 with --segmentor)')
    parser.add_argument('--size', type=int, nargs='+', default=[512],
                        help='input size: one value (square) or height width')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--amp', action='store_true',
                        help='autocast: float16 on CUDA, bfloat16 on the CPU')
    parser.add_argument('--amp-dtype', default=None,
                        help='float16 or bfloat16 (CUDA); the CPU runs bfloat16 only')
    parser.add_argument('--memory-format', default='contiguous',
                        help='contiguous or channels_last')
    parser.add_argument('--channels-last', action='store_true',
                        help='the same as --memory-format channels_last')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch.set_num_threads value; 0 leaves torch\'s default')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--stem-channels', type=int, default=None)
    parser.add_argument('--base-channels', type=int, default=64)
    parser.add_argument('--frozen-stages', type=int, default=1)
    parser.add_argument('--reference', default='ResNetV1d', help='ResNetV1d, ResNet or none')
    parser.add_argument('--flops-size', type=int, default=224,
                        help='square size of the FLOP count beside the published one; 0: skip')
    parser.add_argument('--detector', action='store_true',
                        help='time one Faster R-CNN training iteration and one inference')
    parser.add_argument('--config', default=benchmark.DetectorBenchmarkConfig.ours,
                        help='our detector config (--detector)')
    parser.add_argument('--mmdet-config', default=benchmark.DetectorBenchmarkConfig.theirs,
                        help="MMDetection's detector config (--detector)")
    parser.add_argument('--segmentor', action='store_true',
                        help='time DeepLabV3 inference (batch 1 by default), ours vs mmseg')
    parser.add_argument('--segmentor-config', default=benchmark.SegmentorBenchmarkConfig.ours,
                        help='our segmentor config (--segmentor)')
    parser.add_argument('--mmseg-config', default=benchmark.SegmentorBenchmarkConfig.theirs,
                        help="MMSegmentation's segmentor config (--segmentor)")
    parser.add_argument('--compile', action='store_true',
                        help='also time the inference of both models compiled as the tools\' '
                             '--compile does (dynamic shapes, freezing)')
    parser.add_argument('--compile-train', action='store_true',
                        help='with --compile (backbone mode): also time a compiled training '
                             'step of ours')
    parser.add_argument('--memory-path-off', action='store_true',
                        help='backbone mode: also time ours with the memory path switched off '
                             '(RESNEST_MM_MEMORY_PATH=0), interleaved with the rest')
    parser.add_argument('--parts', nargs='+', default=[],
                        help='--detector: parts of ours to time alone, eager and compiled '
                             '(e.g. backbone neck rpn_head)')
    parser.add_argument('--inference-only', action='store_true',
                        help='--detector: time inference only (no training iteration)')
    parser.add_argument('--fuse', action='store_true',
                        help='time inference of our backbone with and without BatchNorm folding')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--name', default=None, help='file name stem of the JSON and PNG')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if len(args.size) not in (1, 2):
        raise SystemExit(f'benchmark: --size={args.size} is invalid; give one or two values')
    size = (args.size[0], args.size[-1])
    if args.fuse:
        return report_fusion(args, size)
    if args.channels_last:
        args.memory_format = 'channels_last'
    if args.batch is None:
        args.batch = 1 if args.segmentor else 2
    common = dict(batch=args.batch, compile=args.compile, size=size, device=args.device,
                  amp=args.amp, amp_dtype=args.amp_dtype, memory_format=args.memory_format,
                  threads=args.threads or None,
                  repeats=args.repeats, warmup=args.warmup)
    from resnest_mm.deploy import CompileUnavailableError

    try:
        if args.segmentor:
            cfg = benchmark.SegmentorBenchmarkConfig(
                ours=args.segmentor_config, theirs=args.mmseg_config, **common)
            result = benchmark.run_segmentor_benchmark(cfg)
        elif args.detector:
            cfg = benchmark.DetectorBenchmarkConfig(
                ours=args.config, theirs=args.mmdet_config,
                inference_only=args.inference_only, parts=tuple(args.parts), **common)
            result = benchmark.run_detector_benchmark(cfg)
        else:
            cfg = benchmark.BenchmarkConfig(
                depth=args.depth, stem_channels=args.stem_channels,
                base_channels=args.base_channels, frozen_stages=args.frozen_stages,
                reference=args.reference, flops_size=args.flops_size or None,
                compile_train=args.compile_train,
                memory_path_off=args.memory_path_off, **common)
            result = benchmark.run_benchmark(cfg)
    except (ValueError, CompileUnavailableError) as err:
        print(err, file=sys.stderr)
        return 2
    kind = 'segmentor' if args.segmentor else 'detector' if args.detector else (
        f'backbone_s{args.depth}')
    name = args.name or kind + (
        f'_{args.device}_b{args.batch}_{size[0]}x{size[1]}_{args.memory_format}'
        + (f'_amp_{result["config"]["amp_dtype"]}' if args.amp else '')
        + ('_compiled' if args.compile else ''))
    print(benchmark.format_table(result))
    for part, entry in (result.get('parts') or {}).items():
        print(f"part {part}: compiled / eager {entry['ratio']:.3f} ("
              f"{entry['compiled_s']['median'] * 1e3:.0f} vs {entry['eager_s']['median'] * 1e3:.0f}"
              f" ms), first call {entry['first_call_s']:.1f} s, max abs diff "
              f"{entry['max_abs_diff']:.2g}")
    json_path = benchmark.write_json(result, f'{args.out_dir}/{name}.json')
    png_path = benchmark.draw_chart(result, f'{args.out_dir}/{name}.png')
    print(f'wrote {json_path} and {png_path}')
    return 0


def report_fusion(args: argparse.Namespace, size: tuple[int, int]) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = benchmark.benchmark_fusion(
        depth=args.depth, stem_channels=args.stem_channels or (64 if args.depth == 50 else 128),
        base_channels=args.base_channels, batch=args.batch, size=size, repeats=args.repeats,
        warmup=args.warmup)
    for name in ('bn', 'fused'):
        wall, cpu = result[name], result[name]['cpu']
        print(f'{name:6s} inference: median {wall["median"] * 1e3:.1f} ms wall '
              f'(min {wall["min"] * 1e3:.1f}), {cpu["median"] * 1e3:.1f} ms CPU')
    print(f'{result["pairs"]} conv/BN pairs folded, max abs diff {result["max_abs_diff"]:.2e}; '
          f'speed-up x{result["speedup_wall"]:.2f} wall, x{result["speedup_cpu"]:.2f} CPU')
    return 0


if __name__ == '__main__':
    sys.exit(main())
