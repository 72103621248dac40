#!/usr/bin/env bash
# The GPU check: our ResNeSt against MMDetection's on CUDA (fp32, fp16 and bf16 autocast: outputs
# and gradients), the memory recipes on and off bit-identical, and the benchmark with
# --amp --memory-format channels_last at batch 32 at 224x224 and batch 2 at 1024x1024; one table.
#
#   bash tools/gpu_check.sh --fetch            # here, with PyPI: wheels and the mmcv sdist into .whl/
#   bash tools/gpu_check.sh [OUT_DIR]          # on the GPU machine (bare: no mm packages, offline)
#   bash tools/gpu_check.sh --device cpu --tiny [OUT_DIR]   # the smoke run of the default tests
#
# On a machine without mmcv/mmengine/mmdet it installs the carried wheels from .whl/ into
# /tmp/site and builds mmcv 2.1.0 from its sdist with its CPU ops (CUDA hidden during the build,
# MAX_JOBS = cores; about 3 minutes on 16 cores: the CUDA path of the backbones needs no mmcv
# op, but mmdet's model package imports mmcv.ops). For the device tool: carry ".whl" and run
#   bash tools/gpu_check.sh $OUT
# .whl/ is git-ignored; never commit wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WHEELS=$REPO/.whl
SITE=/tmp/site

# Pure-Python wheels for the GPU machine's Python 3.12 and what they need beyond its image
# (device/KINDS.md lists the image: numpy, scipy, matplotlib, opencv-python-headless, rich,
# pyyaml, regex, tqdm, six, packaging, pillow are there).
PACKAGES="mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 addict==2.4.0 yapf==0.43.0
termcolor==3.1.0 terminaltables==3.1.10 platformdirs==4.3.8 tomli==2.2.1 ftfy==6.3.1 wcwidth==0.2.13
setuptools==79.0.1"
BINARY_PACKAGES="pycocotools==2.0.10 shapely==2.1.1"
MMCV_SDIST=mmcv==2.1.0

fetch() {
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  local platform="--only-binary=:all: --python-version 3.12 --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64"
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps $platform -d "$WHEELS" $PACKAGES $BINARY_PACKAGES
  # no build isolation: mmcv's setup.py imports pkg_resources, which the newest setuptools lacks
  python3 -m pip download -q --no-deps --no-build-isolation --no-binary=:all: -d "$WHEELS" \
    "$MMCV_SDIST"
  du -sh "$WHEELS"
}

have_stack() {
  python3 -c 'import mmcv.ops, mmengine, mmdet.models' >/dev/null 2>&1
}

install_stack() {
  echo "gpu_check: installing the carried wheels into $SITE"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH=$SITE:${PYTHONPATH:-}
  echo "gpu_check: building mmcv with its CPU ops (CUDA hidden), $(nproc) jobs," \
    "ninja: $(command -v ninja || echo 'none, one file at a time')"
  local start=$SECONDS log
  log=$(cd "$OUT_DIR" && pwd)/mmcv-build.log
  rm -rf /tmp/mmcv-src && mkdir -p /tmp/mmcv-src
  tar -xzf "$WHEELS"/mmcv-2.1.0.tar.gz -C /tmp/mmcv-src
  (cd /tmp/mmcv-src/mmcv-2.1.0 && CUDA_VISIBLE_DEVICES= FORCE_CUDA=0 MMCV_WITH_OPS=1 \
    MAX_JOBS=$(nproc) timeout 360 python3 setup.py -q build_ext --inplace >"$log" 2>&1) \
    || { tail -20 "$log"; echo "gpu_check: the mmcv build failed or ran past 360 s ($log)"; exit 3; }
  export PYTHONPATH=/tmp/mmcv-src/mmcv-2.1.0:$PYTHONPATH
  echo "gpu_check: mmcv built in $((SECONDS - start)) s"
  python3 -c 'import mmcv.ops, mmengine, mmdet.models; print("gpu_check: mmcv",
    mmcv.__version__, "mmengine", mmengine.__version__, "mmdet", mmdet.__version__)' \
    || { echo 'gpu_check: the installed stack does not import'; exit 3; }
}

if [[ ${1:-} == --fetch ]]; then
  fetch
  exit 0
fi
ARGS=()
OUT_DIR=work_dirs/gpu_check
while [[ $# -gt 0 ]]; do
  case $1 in
    --device|--repeats|--threads) ARGS+=("$1" "$2"); shift 2 ;;
    --tiny) ARGS+=("$1"); shift ;;
    -*) echo "gpu_check.sh: unknown option $1 (allowed: --fetch, --device, --tiny, --repeats, --threads, OUT_DIR)" >&2; exit 2 ;;
    *) OUT_DIR=$1; shift ;;
  esac
done
export PYTHONPATH=$REPO:${PYTHONPATH:-}
mkdir -p "$OUT_DIR"
if ! have_stack; then
  [[ -d $WHEELS ]] || { echo "gpu_check: no mmcv/mmdet here and no $WHEELS (run --fetch where PyPI is reachable, then carry .whl)" >&2; exit 2; }
  install_stack
  export PYTHONPATH=$REPO:$PYTHONPATH
fi
python3 -c 'import torch; print("gpu_check: torch", torch.__version__, "cuda", torch.cuda.is_available())'
PYTHONUNBUFFERED=1 python3 -m resnest_mm.benchmark.gpu_check "${ARGS[@]}" --out-dir "$OUT_DIR" \
  2>&1 | tee "$OUT_DIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
