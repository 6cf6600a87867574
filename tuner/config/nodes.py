"""Config-node helpers every layer may use: a section as a plain dict, the class a ``_target_``
names (imported, with a one-line error when it cannot be), a short hash of some sections."""

from __future__ import annotations

import hashlib
import importlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tuner.errors import UserError


def target_class(node: DictConfig, key: str) -> Any:
    """The class (or callable) ``node._target_`` names, imported."""
    target = node.get("_target_")
    if not target:
        raise UserError(f"{key}._target_", target, "name a class, e.g. tuner.models.MLP")
    module_name, _, attr = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(
            f"{key}._target_",
            target,
            f"cannot import it ({type(exc).__name__}: {exc}); check the dotted path and that its "
            "folder is on PYTHONPATH",
        ) from None


def plain(node: DictConfig) -> dict[str, Any]:
    """A config section as a plain dict with string keys, interpolations resolved."""
    value = OmegaConf.to_container(node, resolve=True)
    assert isinstance(value, dict)
    return {str(k): v for k, v in value.items()}


def config_hash(cfg: DictConfig, *keys: str) -> str:
    """A short hash of some top-level sections of the config."""
    full = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(full, dict)
    part = {k: full[k] for k in keys if k in full}
    return hashlib.sha1(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()[:6]
