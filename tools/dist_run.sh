#!/usr/bin/env bash
# Run a tool with NPROC processes per node through torchrun, with this repository importable:
#   tools/dist_run.sh NPROC TOOL [TOOL args]      (TOOL: a script in tools/, e.g. train.py)
# tools/dist_train.sh and tools/dist_test.sh call it with --launcher pytorch.
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR and PORT (defaults 1, 0, 127.0.0.1, 29500).
# Its exit status is that of the process that stopped the run (75: preempted and saved, 74: a save
# failed; resnest_mm.apis.launch), not torchrun's 1.
set -euo pipefail
NPROC=$1
TOOL=$2
HERE=$(dirname "$0")

PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python3}" -c \
    'import sys; from resnest_mm.apis.launch import torchrun; sys.exit(torchrun(sys.argv[1:]))' \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" "$HERE/$TOOL" "${@:3}"
