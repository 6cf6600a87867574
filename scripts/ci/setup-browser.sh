#!/usr/bin/env bash
# For the browser test of the MLflow UI (tests/test_mlflow_ui.py): Debian's Chromium, driven
# by the Playwright package. `playwright install` is never run, so no browser is downloaded:
# the test starts /usr/bin/chromium itself and Playwright attaches to it. Idempotent; starts nothing.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  for attempt in 1 2 3 4 5; do  # another apt-get may hold the dpkg lock for a while
    if apt-get update -q && apt-get install -y -q chromium; then
      break
    fi
    [ "$attempt" = 5 ] && { echo "setup-browser: apt-get install chromium failed"; exit 1; }
    sleep 20
  done
fi
python -m pip install -q "playwright>=1.40"
chromium --version 2>/dev/null
