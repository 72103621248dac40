#!/usr/bin/env bash
# Evaluate with GPUS processes per node through torchrun (CPU-only machines use gloo):
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR and PORT (defaults 1, 0, 127.0.0.1, 29500).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args]" >&2
    exit 2
fi
exec "$(dirname "$0")/dist_run.sh" "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
