"""tuner: learning-rate tuning with Hydra configs, Optuna, PyTorch Lightning and MLflow."""

from __future__ import annotations

__version__ = "0.1.0"
