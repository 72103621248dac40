"""--compile (resnest_mm.deploy.compile): compiled tiny detectors and segmentors predict what
the eager ones predict, through tools/test.py and tools/infer.py, compile once over image
sizes, and a machine that cannot compile stops with one line or (one part) runs eager."""

import contextlib
import json
import os
import subprocess
import sys
import warnings

import mmengine
import pytest
import torch
from helpers import load_tool, randomize_
from tiny import (
    DEEPLABV3,
    FASTER_RCNN,
    REPO,
    as_cli,
    tiny_detection_options,
    tiny_segmentation_options,
)

from resnest_mm.apis import load_config
from resnest_mm.compat import has_inductor_freezing, inference_compile_settings
from resnest_mm.datasets import make_coco
from resnest_mm.deploy import cache_dir, check_compiler, compile_model, uncompile

test_tool, infer_tool = load_tool('test'), load_tool('infer')


@pytest.fixture(autouse=True, scope='module')
def inductor_cache(tmp_path_factory):
    """One fresh inductor cache for this module: nothing read from or left in ~/.cache."""
    before = os.environ.get('TORCHINDUCTOR_CACHE_DIR')
    os.environ['TORCHINDUCTOR_CACHE_DIR'] = str(tmp_path_factory.mktemp('inductor'))
    yield os.environ['TORCHINDUCTOR_CACHE_DIR']
    if before is None:
        os.environ.pop('TORCHINDUCTOR_CACHE_DIR')
    else:
        os.environ['TORCHINDUCTOR_CACHE_DIR'] = before


def _random_model(cfg, seed: int = 0):
    """The config's model with random, well-scaled weights (convolutions, norms and the heads'
    linear layers), so that scores are spread and no two boxes tie."""
    from mmengine.registry import MODELS, init_default_scope

    import resnest_mm  # noqa: F401

    init_default_scope(cfg.default_scope)
    model = randomize_(MODELS.build(cfg.model), seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                bound = (3 / module.in_features) ** 0.5
                module.weight.copy_((torch.rand(module.weight.shape, generator=gen) * 2 - 1)
                                    * bound)
                module.bias.copy_(torch.rand(module.bias.shape, generator=gen) * 0.2 - 0.1)
    return model.eval()


def _checkpoint(cfg, path) -> str:
    torch.save({'state_dict': _random_model(cfg).state_dict()}, path)
    return str(path)


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = make_coco(tmp_path_factory.mktemp('coco'), num_train=1, num_val=2, seed=0,
                     height=64, width=64)
    options = tiny_detection_options(f'{root}/')
    checkpoint = _checkpoint(load_config(FASTER_RCNN, options),
                             tmp_path_factory.mktemp('det') / 'det.pth')
    return root, options, checkpoint


def _test_run(work_dir, checkpoint, options, *extra) -> tuple[dict, list]:
    """tools/test.py on the tiny detector: its metrics and its per-image predictions."""
    out = work_dir / 'predictions.pkl'
    test_tool.main([str(FASTER_RCNN), checkpoint, '--work-dir', str(work_dir), '--out',
                    str(out), *extra, *as_cli(options)])
    metrics = json.loads(sorted(work_dir.glob('*/*.json'))[-1].read_text())
    timing = ('time', 'data_time')
    return {k: v for k, v in metrics.items() if k not in timing}, mmengine.load(out)


def _assert_same_detections(eager: dict, compiled: dict) -> None:
    a, b = eager['pred_instances'], compiled['pred_instances']
    assert len(a['scores']) > 0 and len(a['scores']) == len(b['scores'])
    assert torch.equal(a['labels'], b['labels'])
    for key in ('bboxes', 'scores'):
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-4)


def test_freezing_is_patched_only_within_the_context_and_where_inductor_has_it(monkeypatch):
    from torch._inductor import config as inductor_config

    try:  # torch >= 2.2
        from torch.fx.experimental import _config as fx_config
    except ImportError:
        fx_config = None
    duck = getattr(fx_config, 'use_duck_shape', None)
    assert has_inductor_freezing() and inductor_config.freezing is False
    with inference_compile_settings():
        assert inductor_config.freezing is True
        assert getattr(fx_config, 'use_duck_shape', None) is (None if duck is None else False)
    assert inductor_config.freezing is False
    assert getattr(fx_config, 'use_duck_shape', None) is duck
    monkeypatch.delattr(inductor_config, 'freezing')
    assert not has_inductor_freezing()
    with inference_compile_settings():  # an inductor without it: a plain compile, no error
        pass


@pytest.mark.slow  # compiles a backbone and a neck: about a minute on 2 cores, more if shared
def test_detector_test_with_compile_gives_the_same_metrics_and_predictions(coco, tmp_path,
                                                                           capsys):
    _, options, checkpoint = coco
    metrics, eager = _test_run(tmp_path / 'eager', checkpoint, options)
    options = {**options, 'log_level': 'INFO'}
    compiled_metrics, compiled = _test_run(tmp_path / 'compiled', checkpoint, options,
                                           '--compile')
    assert compiled_metrics == metrics
    assert [p['img_path'] for p in compiled] == [p['img_path'] for p in eager]
    for a, b in zip(eager, compiled, strict=True):
        _assert_same_detections(a, b)
    line = [x for x in capsys.readouterr().out.splitlines() if '--compile: compiled in' in x]
    assert len(line) == 1 and 'backbone' in line[0] and 'neck' in line[0], line


def _logits_over_sizes(monkeypatch, parts):
    """Compiled ``parts`` of a tiny DeepLabV3 against an eager copy, at four image sizes."""
    cfg = load_config(DEEPLABV3, tiny_segmentation_options('unused/'))
    model, eager = _random_model(cfg), _random_model(cfg)
    report = compile_model(model, parts)
    # Any recompile (a new graph for a new size) would raise, and the part would fall back
    # to eager with a warning: none may happen after the first size.
    gen = torch.Generator().manual_seed(0)
    with warnings.catch_warnings(), contextlib.ExitStack() as after_first:
        warnings.simplefilter('error', RuntimeWarning)
        # Heights and widths from 32 to 192, all with six 32x32 cells: torch guards whether
        # each convolution's output holds more than 20480 values (its backend choice), which
        # these sizes leave unchanged at every stride. The first one is not square (torch <
        # 2.2 has duck shapes).
        for i, (h, w) in enumerate([(64, 96), (96, 64), (192, 32), (32, 192)]):
            if i == 1:  # dynamo's own patch: it restores its config on every torch
                after_first.enter_context(torch._dynamo.config.patch(error_on_recompile=True))
            image = torch.randn(1, 3, h, w, generator=gen)
            metas = [dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))]
            with torch.no_grad():
                got = model.encode_decode(image, metas)
                want = eager.encode_decode(image, metas)
            assert got.shape == want.shape == (1, model.decode_head.num_classes, h, w)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert all(p.failed is None and p.first_call_s > 0 for p in report.parts)
    assert 'freezing on' in report.summary()
    return model, report


def test_compiled_decode_head_gives_eager_logits_over_image_sizes_with_one_compile(monkeypatch):
    model, report = _logits_over_sizes(monkeypatch, ['decode_head'])
    assert 'decode_head' in report.summary()
    assert uncompile(model) == 1 and 'forward' not in model.decode_head.__dict__


@pytest.mark.slow  # compiles a backbone
def test_compiled_segmentor_gives_eager_logits_over_image_sizes_with_one_compile(monkeypatch):
    _, report = _logits_over_sizes(monkeypatch, None)
    assert [p.name for p in report.parts] == ['backbone', 'decode_head']


@pytest.mark.slow  # compiles a backbone and a neck
def test_infer_with_compile_writes_the_same_predictions(coco, tmp_path):
    root, options, checkpoint = coco
    cfg = load_config(FASTER_RCNN, options)
    config = tmp_path / 'faster.py'
    cfg.dump(str(config))
    for mode, extra in (('eager', []), ('compiled', ['--compile'])):
        infer_tool.main([str(root / 'val'), str(config), checkpoint, '--out-dir',
                         str(tmp_path / mode), '--score-thr', '0', *extra])
    for path in sorted((tmp_path / 'eager' / 'preds').glob('*.json')):
        a = json.loads(path.read_text())
        b = json.loads((tmp_path / 'compiled' / 'preds' / path.name).read_text())
        assert a['labels'] == b['labels'] and len(a['scores']) > 0
        torch.testing.assert_close(torch.tensor(b['bboxes']), torch.tensor(a['bboxes']),
                                   rtol=0, atol=1e-3)  # JSON: boxes rounded
        torch.testing.assert_close(torch.tensor(b['scores']), torch.tensor(a['scores']),
                                   rtol=0, atol=1e-4)


def test_a_part_the_compiler_fails_on_runs_eager_with_one_warning(monkeypatch, tmp_path):
    from torch._inductor import config as inductor_config

    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(tmp_path / 'empty-cache'))
    from torch._inductor import codecache

    if hasattr(codecache, 'cache_dir') and hasattr(codecache.cache_dir, 'cache_clear'):
        codecache.cache_dir.cache_clear()  # torch < 2.2 reads the variable once
    monkeypatch.setattr(inductor_config.cpp, 'cxx', (None, str(tmp_path / 'no-such-g++')))
    cfg = load_config(DEEPLABV3, tiny_segmentation_options('unused/'))
    model, eager = _random_model(cfg), _random_model(cfg)
    report = compile_model(model, ['decode_head'])
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 64, 64))
    warned = pytest.warns(RuntimeWarning, match=r'compiling decode_head failed.*runs eager')
    with warned as caught, torch.no_grad():
        got = [model.decode_head(features) for _ in range(2)]
    assert len(caught) == 1
    with torch.no_grad():
        want = eager.decode_head(features)
    for out in got:
        torch.testing.assert_close(out, want, rtol=0, atol=0)
    assert 'decode_head eager (failed)' in report.summary()
    with pytest.raises(RuntimeError, match=r'--compile: torch.compile does not work'):
        check_compiler()


def test_a_machine_without_a_compiler_stops_test_py_with_one_line(coco, tmp_path):
    _, options, checkpoint = coco
    env = {**os.environ, 'CXX': str(tmp_path / 'no-such-g++'),
           'TORCHINDUCTOR_CACHE_DIR': str(tmp_path / 'cache'), 'PYTHONPATH': str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'test.py'), str(FASTER_RCNN), checkpoint,
         '--work-dir', str(tmp_path / 'w'), '--compile', *as_cli(options)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('test.py: error: --compile: torch.compile does not work with torch')
    assert 'leave --compile off' in last
    assert not list((tmp_path / 'w').glob('*/*.json'))  # nothing evaluated


def test_cache_goes_to_the_documented_folder_unless_set(monkeypatch, tmp_path):
    monkeypatch.delenv('TORCHINDUCTOR_CACHE_DIR')
    monkeypatch.setenv('HOME', str(tmp_path))
    assert cache_dir() == tmp_path / '.cache' / 'resnest_mm' / 'inductor'
    assert os.environ['TORCHINDUCTOR_CACHE_DIR'] == str(cache_dir())
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(tmp_path / 'mine'))
    assert cache_dir() == tmp_path / 'mine' and (tmp_path / 'mine').is_dir()


def test_unknown_part_is_named():
    cfg = load_config(DEEPLABV3, tiny_segmentation_options('unused/'))
    with pytest.raises(ValueError, match="no part 'roi_head'"):
        compile_model(_random_model(cfg), ['roi_head'])



@pytest.mark.slow  # compiles two tiny backbones
def test_benchmark_compile_writes_the_compiled_ratios(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'benchmark.py'), '--depth', '14', '--size', '64',
         '--stem-channels', '8', '--base-channels', '4', '--repeats', '1', '--compile',
         '--reference', 'none', '--flops-size', '0', '--out-dir', str(tmp_path), '--name', 'b'],
        env={**os.environ, 'PYTHONPATH': str(REPO)}, capture_output=True, text=True,
        timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / 'b.json').read_text())
    assert set(result['compiled']) == {'resnest_mm.ResNeSt compiled', 'mmdet.ResNeSt compiled'}
    for entry in result['compiled'].values():
        assert entry['max_abs_diff_vs_eager'] <= 1e-4 and entry['freezing']
    ratios = result['ratios']
    eager = result['models']['mmdet.ResNeSt']['inference_s']['median']
    ours = result['compiled']['resnest_mm.ResNeSt compiled']['inference_s']['median']
    assert ratios['compiled_inference_vs_mmdet_eager'] == pytest.approx(ours / eager)
    assert result['targets']['compiled_inference_vs_mmdet_eager'] == 0.75
    assert 'compiled_inference_vs_mmdet_eager: ' in proc.stdout
