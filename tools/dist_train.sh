#!/usr/bin/env bash
# Train with GPUS processes per node through torchrun (CPU-only machines use gloo):
#   tools/dist_train.sh CONFIG GPUS [train.py args]
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR and PORT (defaults 1, 0, 127.0.0.1, 29500).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args]" >&2
    exit 2
fi
exec "$(dirname "$0")/dist_run.sh" "$2" train.py "$1" --launcher pytorch "${@:3}"
