"""Speed, memory and size of resnest_mm's ResNeSt next to MMDetection's ResNeSt and ResNet.

One concern per module:

- :mod:`.settings`: what a run measures (:class:`BenchmarkConfig`) and its validation;
- :mod:`.weights`: random, well-scaled weights for the compared models;
- :mod:`.timing`: interleaved wall-clock and CPU timing, medians and spread;
- :mod:`.memory`: peak and held bytes (CUDA counters; the CPU profiler's allocation events);
- :mod:`.analysis`: parameters, FLOPs and the ratios of the figures;
- :mod:`.machine`: what the figures were measured on;
- :mod:`.backbone`: the backbone mode (:func:`run_benchmark`);
- :mod:`.detector`: the Faster R-CNN mode (:func:`run_detector_benchmark`);
- :mod:`.segmentor`: the DeepLabV3 mode (:func:`run_segmentor_benchmark`);
- :mod:`.compiled`: the compiled models of ``--compile`` next to the eager ones;
- :mod:`.fusion`: inference with and without BatchNorm folding (``--fuse``);
- :mod:`.report`: the table, the JSON record and the chart.

Imports run one way: ``backbone``, ``detector`` and ``segmentor`` use the modules above them
in this list, and ``compiled``.
"""

from .analysis import (
    CLASSIFIER_IN,
    IMAGENET_CLASSES,
    PUBLISHED,
    count_flops,
    count_params,
    published_comparison,
    ratios,
)
from .backbone import (
    backbone_memory,
    build_backbones,
    compare_outputs,
    held_for_backward_bytes,
    inference_step,
    run_benchmark,
    training_step,
)
from .detector import (
    DetectorBenchmarkConfig,
    build_detectors,
    run_detector_benchmark,
    synthetic_detection_batch,
    validate_detector_config,
)
from .fusion import benchmark_fusion
from .machine import cpu_model, machine_info
from .memory import allocated_bytes, cpu_span_allocations, peak_memory_bytes
from .report import draw_chart, format_table, write_json
from .segmentor import (
    SegmentorBenchmarkConfig,
    build_segmentors,
    run_segmentor_benchmark,
    synthetic_segmentation_batch,
)
from .settings import (
    CPU_TARGETS,
    DEPTHS,
    MEMORY_FORMATS,
    MMDET,
    MMDET_RESNEST_DEPTHS,
    OURS,
    OURS_PLAIN,
    REFERENCE,
    REFERENCES,
    SHALLOW_STAGE_BLOCKS,
    BenchmarkConfig,
    RunSettings,
    validate_config,
    validate_run_settings,
)
from .timing import summarize, time_interleaved
from .weights import randomize_

__all__ = [
    'CLASSIFIER_IN',
    'CPU_TARGETS',
    'DEPTHS',
    'IMAGENET_CLASSES',
    'MEMORY_FORMATS',
    'MMDET',
    'MMDET_RESNEST_DEPTHS',
    'OURS',
    'OURS_PLAIN',
    'PUBLISHED',
    'REFERENCE',
    'REFERENCES',
    'SHALLOW_STAGE_BLOCKS',
    'BenchmarkConfig',
    'DetectorBenchmarkConfig',
    'RunSettings',
    'SegmentorBenchmarkConfig',
    'allocated_bytes',
    'backbone_memory',
    'benchmark_fusion',
    'build_backbones',
    'build_detectors',
    'build_segmentors',
    'compare_outputs',
    'count_flops',
    'count_params',
    'cpu_model',
    'cpu_span_allocations',
    'draw_chart',
    'format_table',
    'held_for_backward_bytes',
    'inference_step',
    'machine_info',
    'peak_memory_bytes',
    'published_comparison',
    'randomize_',
    'ratios',
    'run_benchmark',
    'run_detector_benchmark',
    'run_segmentor_benchmark',
    'summarize',
    'synthetic_detection_batch',
    'synthetic_segmentation_batch',
    'time_interleaved',
    'training_step',
    'validate_config',
    'validate_detector_config',
    'validate_run_settings',
    'write_json',
]
