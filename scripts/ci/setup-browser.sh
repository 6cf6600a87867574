#!/usr/bin/env bash
# The browser test of the MLflow UI (tests/test_mlflow_ui.py): Debian's Chromium, driven
# by the Playwright package. `playwright install` is never run: no browser is downloaded,
# the test points Playwright at /usr/bin/chromium. Idempotent; starts nothing.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  for attempt in 1 2 3 4 5; do  # another apt-get may hold the dpkg lock for a while
    if apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; then
      break
    fi
    [ "$attempt" = 5 ] && { echo "setup-browser: apt-get failed"; exit 1; }
    sleep 20
  done
fi
python -m pip install -q "playwright>=1.40" "optuna-dashboard>=0.15" "plotly>=5"
chromium --version
