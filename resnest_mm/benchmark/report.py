"""The result as a plain-text table, a JSON record and a PNG bar chart."""

from __future__ import annotations

import json
from pathlib import Path


def format_table(result: dict) -> str:
    """A plain-text table of the result: one row per model, then the ratios."""
    header = ['model', 'inference ms (min-max)', 'train ms (min-max)', 'inference CPU ms',
              'train CPU ms', 'train peak MiB', 'held MiB', 'params M', 'GMACs']
    rows = [header]

    def ms(stats: dict | None) -> str:
        if stats is None:  # not measured (--inference-only)
            return '-'
        return (f"{stats['median'] * 1e3:.0f} "
                f"({stats['min'] * 1e3:.0f}-{stats['max'] * 1e3:.0f})")

    for name, entry in result['models'].items():
        inf, train = entry['inference_s'], entry.get('train_s')
        flops = entry.get('flops_at_input')
        rows.append([
            name, ms(inf), ms(train), ms(inf['cpu']), ms(train and train['cpu']),
            f"{entry['train_peak_bytes'] / 2**20:.0f}" if 'train_peak_bytes' in entry else '-',
            f"{entry['held_bytes'] / 2**20:.0f}" if 'held_bytes' in entry else '-',
            f"{entry['params'] / 1e6:.2f}",
            f'{flops / 1e9:.2f}' if flops else '-',
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ['  '.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
             for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    lines.append('')
    for name, entry in (result.get('compiled') or {}).items():
        lines.append(f"{name}: inference {ms(entry['inference_s'])} ms, CPU "
                     f"{ms(entry['inference_s']['cpu'])} ms; first call (compiling) "
                     f"{entry['first_call_s']:.1f} s; max abs diff vs eager "
                     f"{entry['max_abs_diff_vs_eager']:.2g}"
                     + (f"; train {ms(entry['train_s'])} ms (first call "
                        f"{entry['train_first_call_s']:.1f} s)" if 'train_s' in entry else ''))
    for key, value in result['ratios'].items():
        target = result.get('targets', {}).get(key)
        suffix = f'  (target <= {target})' if target else ''
        lines.append(f'{key}: {value:.3f}{suffix}')
    published = result.get('published')
    if published:
        lines.append(
            f"params: ours {published['ours_backbone_params_m']:.2f} M backbone "
            f"(published S-50 {published['resnest50_backbone_params_m']} M)")
        if 'ours_with_fc_gmacs_at_flops_size' in published:
            lines.append(
                f"GMACs with fc at {result['config']['flops_size']}: ours "
                f"{published['ours_with_fc_gmacs_at_flops_size']:.2f} "
                f"(published S-50 {published['resnest50_with_fc_gmacs_224']})"
                + ('' if published['comparable'] else '  [settings differ from S-50]'))
    machine = result['machine']
    isa = machine.get('isa', {})
    lines.append(f"machine: {machine['cpu']} ({isa.get('capability')}, AVX512-BF16 "
                 f"{isa.get('avx512_bf16')}, AMX {isa.get('amx')}), torch {machine['torch']}, "
                 f"oneDNN {machine.get('onednn')}, {machine['threads']} threads"
                 + (f", GPU {machine['gpu']}" if 'gpu' in machine else ''))
    parity = result['parity']
    lines.append('outputs equal before timing: ' + ', '.join(
        f'{k}={v:.3g}' for k, v in parity.items() if isinstance(v, float)))
    return '\n'.join(lines)


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def draw_chart(result: dict, path: str | Path) -> Path:
    """Bar chart (PNG): inference time, training time and peak training memory per model."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    models = {**result['models'], **(result.get('compiled') or {})}
    names = list(models)
    zero = dict(median=0.0, min=0.0, max=0.0)  # not measured: compiled (inference only) models
    panels = [
        ('inference (ms)', [models[n]['inference_s'] for n in names], 1e3),
        ('training step (ms)', [models[n].get('train_s', zero) for n in names], 1e3),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    colors = (['tab:green', 'tab:orange', 'tab:gray', 'tab:blue', 'tab:olive', 'tab:red']
              * 2)[:len(names)]
    for ax, (title, stats, scale) in zip(axes[:2], panels, strict=True):
        medians = [s['median'] * scale for s in stats]
        errors = [[(s['median'] - s['min']) * scale for s in stats],
                  [(s['max'] - s['median']) * scale for s in stats]]
        ax.bar(range(len(names)), medians, yerr=errors, capsize=4, color=colors)
        ax.set_title(f'{title}, median (min-max)')
    memory = [models[n].get('train_peak_bytes', 0) / 2**20 for n in names]
    axes[2].bar(range(len(names)), memory, color=colors)
    axes[2].set_title('peak training memory (MiB)')
    for ax in axes:
        ax.set_xticks(range(len(names)), [n.replace('.', '.\n', 1) for n in names], fontsize=8)
    c = result['config']
    fig.suptitle(f"{result['kind']}: batch {c['batch']}, {c['size'][0]}x{c['size'][1]}, "
                 f"{c['device']} {('AMP ' + str(c.get('amp_dtype'))) if c['amp'] else 'fp32'}, "
                 f"{c['memory_format']}, "
                 f"{result['machine']['threads']} threads")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
