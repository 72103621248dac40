"""tools/gpu_check.sh: its --device cpu smoke run (the CUDA run needs a GPU machine)."""

from __future__ import annotations

import json
import os
import subprocess

import torch
from tiny import REPO

from resnest_mm.benchmark import gpu_check


def test_cpu_smoke_run_of_the_gpu_check_script(tmp_path):
    out = tmp_path / 'check'
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        ['bash', str(REPO / 'tools' / 'gpu_check.sh'), '--device', 'cpu', '--tiny',
         '--repeats', '1', '--threads', '2', str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / 'gpu_check.json').read_text())
    assert result['ok'] is True and result['device'] == 'cpu'
    assert [row['precision'] for row in result['parity']] == ['float32', 'bfloat16']
    assert all(row['outputs_bit_identical'] and row['grads_bit_identical']
               for row in result['recipes'])
    assert [(b['config']['batch'], b['config']['size']) for b in result['benchmarks']] == [
        (case.batch, list(case.size)) for case in gpu_check.TINY_CASES]
    for bench in result['benchmarks']:
        assert bench['config']['amp'] and bench['config']['memory_format'] == 'channels_last'
    table = (out / 'gpu_check.log').read_text()
    assert '| recipes on vs off: bit-identical | bfloat16 | pass |' in table
    assert 'all checks passed' in table


def test_a_failing_parity_row_fails_the_check(monkeypatch, capsys, tmp_path):
    real = gpu_check.check_parity

    def broken(models, image, device):  # ours gets one weight 5 % off
        with torch.no_grad():
            models[gpu_check.OURS].layer4[0].conv3.weight.mul_(1.05)
        return real(models, image, device)

    monkeypatch.setattr(gpu_check, 'check_parity', broken)
    monkeypatch.setattr(gpu_check, 'TINY_CASES', gpu_check.TINY_CASES[:1])
    assert gpu_check.main(['--device', 'cpu', '--tiny', '--repeats', '1',
                           '--out-dir', str(tmp_path)]) == 1
    assert 'CHECK FAILED' in capsys.readouterr().out


def test_a_part_that_raises_is_a_fail_row_and_the_rest_still_runs(monkeypatch, capsys,
                                                                    tmp_path):
    """One GPU run gets one try: an error in one benchmark case must not lose the others,
    the table or the JSON."""
    real, calls = gpu_check.run_benchmark, []

    def first_case_runs_out_of_memory(cfg):
        calls.append(cfg.batch)
        if len(calls) == 1:
            raise RuntimeError('out of memory\nmore lines')
        return real(cfg)

    monkeypatch.setattr(gpu_check, 'run_benchmark', first_case_runs_out_of_memory)
    assert gpu_check.main(['--device', 'cpu', '--tiny', '--repeats', '1',
                           '--out-dir', str(tmp_path)]) == 1
    first, second = gpu_check.TINY_CASES
    assert calls == [first.batch, second.batch]
    result = json.loads((tmp_path / 'gpu_check.json').read_text())
    name = f'benchmark b{first.batch} {first.size[0]}x{first.size[1]}'
    assert result['errors'] == {name: 'RuntimeError: out of memory'}
    assert [b['config']['batch'] for b in result['benchmarks']] == [second.batch]
    assert all(row['ok'] for row in result['parity'] + result['recipes'])
    out = capsys.readouterr().out
    assert f'| {name} | - | FAIL | RuntimeError: out of memory |' in out
    assert 'CHECK FAILED' in out and '| recipes on vs off: bit-identical | bfloat16 | pass |' in out


def test_cuda_is_refused_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    assert gpu_check.main(['--device', 'cuda']) == 2
    assert "--device='cuda' is invalid" in capsys.readouterr().err


def test_parity_runs_with_exact_kernels_and_the_speed_runs_get_the_defaults_back():
    """TF32 (cuDNN's default for fp32 convolutions) would blur fp32 parity on a GPU."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic
    with gpu_check._exact_kernels('cuda'):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic) == before
