"""The GPU check behind ``tools/gpu_check.sh``: parity, recipes and speed on one device.

1. Parity: our backbone against MMDetection's ResNeSt with the same weights, in fp32 and under
   each AMP dtype (float16 and bfloat16 on CUDA; bfloat16 on the CPU), train mode: the stage
   outputs and every parameter's gradient.
2. Recipes: our backbone with its saved-tensor recipes and with autograd keeping every tensor
   (pass-through saved-tensor hooks, under which the recipes stand aside): outputs and gradients
   must be bit-identical (deterministic kernels).
3. The benchmark (:func:`run_benchmark`) with AMP and channels_last at batch 32 at 224x224 and
   batch 2 at 1024x1024, against MMDetection's ResNeSt and ResNet.

Prints one Markdown table and writes ``gpu_check.json`` (after every part, so a run cut short
keeps what it measured). A part that raises is a FAIL row with its error, and the other parts
still run: there is one GPU run to get everything from. ``--device cpu --tiny`` runs the same
on a small model in seconds (the default tests do, so the check cannot rot).

    python -m resnest_mm.benchmark.gpu_check --device cuda --out-dir $OUT
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

from ..precision import AMP_DTYPES
from .backbone import build_backbones, run_benchmark
from .machine import machine_info
from .report import write_json
from .settings import MMDET, OURS, BenchmarkConfig

TINY_MODEL = dict(depth=14, stem_channels=8, base_channels=4)
# Relative tolerance (of the largest value) of ours against MMDetection's per precision.
PARITY_TOL = {'float32': 1e-4, 'float16': 2e-2, 'bfloat16': 5e-2}


@dataclass
class CheckCase:
    """One benchmark run of the check: ``batch`` images of ``size``."""

    batch: int
    size: tuple[int, int]


FULL_CASES = (CheckCase(32, (224, 224)), CheckCase(2, (1024, 1024)))
TINY_CASES = (CheckCase(4, (32, 32)), CheckCase(2, (64, 64)))


def amp_dtypes(device: str) -> list[str]:
    """The autocast dtypes a device runs: float16 and bfloat16 on CUDA, bfloat16 on the CPU."""
    return list(AMP_DTYPES) if device == 'cuda' else ['bfloat16']


def _train_step(model, image, dtype: str | None, device: str):
    """Outputs and parameter gradients of one train-mode step (autocast in ``dtype``, if any)."""
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=AMP_DTYPES.get(dtype), enabled=dtype is not None):
        outputs = model(image)
    weights = [torch.linspace(-1, 1, o.numel(), device=device).view_as(o) for o in outputs]
    sum((o.float() * w).sum() for o, w in zip(outputs, weights, strict=True)).backward()
    grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
    return [o.float() for o in outputs], grads


def _finite(outputs: list[torch.Tensor], grads: dict) -> bool:
    return all(bool(t.isfinite().all()) for t in [*outputs, *grads.values()])


def _relative_error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    diff = max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))
    scale = max(y.abs().max().item() for y in b)
    return diff / max(scale, 1e-12)


def check_parity(models: dict, image: torch.Tensor, device: str) -> list[dict]:
    """Ours vs MMDetection's ResNeSt in fp32 and each AMP dtype: worst relative errors."""
    rows = []
    for dtype in [None, *amp_dtypes(device)]:
        outs, grads = {}, {}
        for name in (OURS, MMDET):
            outs[name], grads[name] = _train_step(models[name], image, dtype, device)
        assert grads[OURS].keys() == grads[MMDET].keys()
        names = sorted(grads[OURS])
        key = dtype or 'float32'
        # fp16 without loss scaling can overflow: say so rather than report a NaN error
        finite = all(_finite(outs[name], grads[name]) for name in (OURS, MMDET))
        output_error = _relative_error(outs[OURS], outs[MMDET])
        grad_error = max(_relative_error([grads[OURS][n]], [grads[MMDET][n]]) for n in names)
        rows.append(dict(precision=key, output_rel_error=output_error,
                         grad_rel_error=grad_error, tolerance=PARITY_TOL[key], finite=finite,
                         ok=finite and max(output_error, grad_error) <= PARITY_TOL[key]))
    return rows


def check_recipes(model, image: torch.Tensor, device: str) -> list[dict]:
    """Recipes on against off (autograd keeps everything): bit-identical in each precision."""
    rows = []
    twin = copy.deepcopy(model)
    keep_everything = torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)
    for dtype in [None, *amp_dtypes(device)]:
        lean = _train_step(model, image, dtype, device)
        with keep_everything:
            kept = _train_step(twin, image, dtype, device)
        outputs_equal = all(torch.equal(a, b) for a, b in zip(lean[0], kept[0], strict=True))
        grads_equal = lean[1].keys() == kept[1].keys() and all(
            torch.equal(lean[1][n], kept[1][n]) for n in lean[1])
        rows.append(dict(precision=dtype or 'float32', outputs_bit_identical=outputs_equal,
                         grads_bit_identical=grads_equal, ok=outputs_equal and grads_equal))
    return rows


@contextmanager
def _exact_kernels(device: str):
    """Deterministic cuDNN kernels and no TF32 (cuDNN uses it for fp32 convolutions by
    default), for the parity and recipe checks; the speed runs get the defaults back."""
    torch.manual_seed(0)
    if device != 'cuda':
        yield
        return
    flags = ((torch.backends.cudnn, 'benchmark', False),
             (torch.backends.cudnn, 'deterministic', True),
             (torch.backends.cudnn, 'allow_tf32', False),
             (torch.backends.cuda.matmul, 'allow_tf32', False))
    saved = [getattr(obj, name) for obj, name, _ in flags]
    for obj, name, value in flags:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for (obj, name, _), value in zip(flags, saved, strict=True):
            setattr(obj, name, value)


def _error(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}'[:300]


def run_check(device: str = 'cuda', tiny: bool = False, repeats: int = 11,
              threads: int | None = None,
              save: Callable[[dict], object] | None = None) -> dict:
    """The three parts of the check; returns a JSON-serialisable result with ``ok``.

    A part that raises is recorded in ``errors`` (``{part: message}``) and the next one runs;
    ``save`` (if given) receives the result so far after every part.
    """
    model_kwargs = TINY_MODEL if tiny else dict(depth=50)
    cases = TINY_CASES if tiny else FULL_CASES
    result = dict(kind='gpu_check', device=device, tiny=tiny, machine=machine_info(device),
                  parity=[], recipes=[], benchmarks=[], errors={}, ok=False,
                  cases=[asdict(case) for case in cases])

    def part(name: str, fn: Callable[[], object]):
        try:
            return fn()
        except Exception as exc:  # one GPU run: record it and go on
            result['errors'][name] = _error(exc)
            return None
        finally:
            if save is not None:
                save(result)

    with _exact_kernels(device):
        cfg = BenchmarkConfig(device=device, batch=2, size=(64, 64) if tiny else (224, 224),
                              reference='none', threads=threads, **model_kwargs)
        models = part('build', lambda: {n: m.to(device) for n, m in build_backbones(cfg).items()})
        if models is not None:
            image = torch.randn(cfg.batch, 3, *cfg.size,
                                generator=torch.Generator().manual_seed(1)).to(device)
            result['parity'] = part('parity', lambda: check_parity(models, image, device)) or []
            result['recipes'] = part(
                'recipes', lambda: check_recipes(models[OURS], image, device)) or []
    for case in cases:
        bench_cfg = BenchmarkConfig(
            device=device, amp=True, memory_format='channels_last', batch=case.batch,
            size=case.size, repeats=repeats, warmup=2 if device == 'cuda' else 1,
            reference='ResNet', threads=threads, flops_size=None, **model_kwargs)
        bench = part(f'benchmark b{case.batch} {case.size[0]}x{case.size[1]}',
                     lambda c=bench_cfg: run_benchmark(c))
        if bench is not None:
            result['benchmarks'].append(bench)
        if device == 'cuda':
            torch.cuda.empty_cache()
    rows = result['parity'] + result['recipes']
    result['ok'] = bool(rows) and all(row['ok'] for row in rows) and not result['errors']
    if save is not None:
        save(result)
    return result


def format_check(result: dict) -> str:
    """One Markdown table: parity and recipe rows, then one row per benchmark run."""
    lines = ['| check | precision | result | detail |', '|---|---|---|---|']
    for row in result['parity']:
        lines.append(
            f"| ours vs mmdet: outputs, gradients | {row['precision']} | "
            f"{'pass' if row['ok'] else 'FAIL'} | rel. error {row['output_rel_error']:.2g}, "
            f"{row['grad_rel_error']:.2g} (tol {row['tolerance']:g})"
            f"{'' if row['finite'] else '; non-finite values'} |")
    for row in result['recipes']:
        lines.append(
            f"| recipes on vs off: bit-identical | {row['precision']} | "
            f"{'pass' if row['ok'] else 'FAIL'} | outputs {row['outputs_bit_identical']}, "
            f"gradients {row['grads_bit_identical']} |")
    for bench in result['benchmarks']:
        c, r, m = bench['config'], bench['ratios'], bench['models']
        amp = c['amp_dtype'] or ('float16' if c['device'] == 'cuda' else 'bfloat16')
        ours = m[OURS]
        lines.append(
            f"| benchmark b{c['batch']} {c['size'][0]}x{c['size'][1]} {c['memory_format']} | "
            f"AMP {amp} | ours train {ours['train_s']['median'] * 1e3:.1f} ms, inference "
            f"{ours['inference_s']['median'] * 1e3:.1f} ms, peak "
            f"{ours['train_peak_bytes'] / 2**20:.0f} MiB | ours/mmdet train "
            f"{r['train_time']:.3f}, inference {r['inference_time']:.3f}, memory "
            f"{r['train_peak_memory']:.3f}; ours/ResNet train "
            f"{r['ours_over_mmdet.ResNet_train_time']:.3f}, inference "
            f"{r['ours_over_mmdet.ResNet_inference_time']:.3f} |")
    for name, message in result['errors'].items():
        lines.append(f'| {name} | - | FAIL | {message.replace("|", "/")} |')
    machine = result['machine']
    lines.append('')
    lines.append(f"device {result['device']}: {machine.get('gpu', machine['cpu'])}, torch "
                 f"{machine['torch']}; {'all checks passed' if result['ok'] else 'CHECK FAILED'}")
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Parity, recipes and speed on one device.')
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    parser.add_argument('--tiny', action='store_true', help='a small model and small images')
    parser.add_argument('--repeats', type=int, default=11)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads value; default: leave it')
    parser.add_argument('--out-dir', default='work_dirs/gpu_check')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        print("gpu_check: --device='cuda' is invalid; CUDA is not available here "
              '(torch.cuda.is_available() is False); use --device cpu', file=sys.stderr)
        return 2
    out_file = f'{args.out_dir}/gpu_check.json'
    result = run_check(args.device, args.tiny, args.repeats, args.threads,
                       save=lambda partial: write_json(partial, out_file))
    print(format_check(result))
    print(f'wrote {out_file}')
    return 0 if result['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
