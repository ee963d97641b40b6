#!/usr/bin/env bash
# GPU benchmark for a machine with one CUDA GPU (under 5 minutes): images/s and epoch time
# with the data on the GPU, fp32 against fp16 mixed precision, GPU utilisation, and our
# loader against the walkthrough's. Writes jobs/bench/results/gpu-<date>.json.
#   DATA_DIR=/path/to/idx DATASET=mnist jobs/bench/gpu.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=${PYTHON:-python3}
out="jobs/bench/results/gpu-$(date +%Y%m%d-%H%M%S).json"
mkdir -p jobs/bench/results
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
timeout 300 "$python" jobs/bench/gpu.py "$out"
echo "wrote $out"
