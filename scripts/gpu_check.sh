#!/usr/bin/env bash
# Packing check on a GPU machine: a short sweep with two workers sharing one GPU
# (launcher.trials_per_gpu=2) against one worker alone, as trials per minute.
# Ends within 5 minutes: each study stops starting trials after STUDY_S seconds.
# Without a GPU it says so and runs the same comparison on the CPU, smaller.
#
#   bash scripts/gpu_check.sh            # results land in scripts/bench/results/gpu_check-*.md
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  python -c "import torch; print('GPU:', torch.cuda.get_device_name(0))"
  # Two studies of at most ~100 s of trials each, plus start-up: well under 5 minutes.
  exec timeout 290 python scripts/bench/workers.py --device gpu --workers 2 --trials 16 --steps 1500 \
    --study-timeout 90 --name gpu_check
else
  echo "no GPU here (torch.cuda.is_available() is False): running the CPU variant instead"
  exec timeout 290 python scripts/bench/workers.py --device cpu --workers 2 --trials 4 --steps 300 \
    --study-timeout 90 --name gpu_check_cpu data.num_samples=1000
fi
