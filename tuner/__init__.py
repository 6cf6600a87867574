"""tuner: learning-rate tuning with Hydra configs, Optuna, PyTorch Lightning and MLflow."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# MLflow 3 sends usage telemetry to its vendor by default, from every process that imports
# it (the sidecar included), and waits for it at exit. A tuning job talks to its own
# stores only; set MLFLOW_DISABLE_TELEMETRY=false to opt back in.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
