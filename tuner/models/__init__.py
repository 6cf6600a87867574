"""Built-in models. A user's own ``nn.Module`` plugs in through ``model._target_``."""

from __future__ import annotations

from tuner.models._nets import CNN1D, MLP, TinyTransformer

__all__ = ["CNN1D", "MLP", "TinyTransformer"]
