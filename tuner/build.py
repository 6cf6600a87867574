"""Building the user-facing parts of a trial from config: data module and model."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from tuner.errors import UserError


def _target_class(node: DictConfig, key: str) -> Any:
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


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The data module named by ``data._target_``, prepared and set up for fitting."""
    _target_class(cfg.data, "data")
    node = OmegaConf.masked_copy(cfg.data, [k for k in cfg.data if k != "name"])
    try:
        datamodule = instantiate(node, _convert_="all")
    except Exception as exc:
        cause = exc.__cause__ or exc  # Hydra wraps what the constructor raised
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, FileNotFoundError):
            raise UserError(
                "data", cause.filename, "the data path does not exist; fix it in the data config"
            ) from None
        raise
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def unused_model_keys(cfg: DictConfig) -> list[str]:
    """Model keys the model's constructor does not take; they are left out when it is built.

    Overriding only ``model._target_`` leaves the previous option's arguments behind
    (``channels`` of ``model=cnn1d`` under a person's own class).
    """
    accepted = inspect.signature(_target_class(cfg.model, "model")).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return []
    return [str(k) for k in cfg.model if k not in ("_target_", "name") and k not in accepted]


def model_note(cfg: DictConfig) -> str | None:
    """The note on :func:`unused_model_keys`, printed once per study (None when there are none)."""
    unused = unused_model_keys(cfg)
    if not unused:
        return None
    source = f"model={cfg.model.name}" if cfg.model.get("name") else "the model option"
    return (
        f"note: model keys {', '.join(unused)} (left from {source}) are not arguments of "
        f"{cfg.model._target_}; ignored"
    )


def build_model(cfg: DictConfig, datamodule: pl.LightningDataModule) -> nn.Module:
    """The model named by ``model._target_``.

    ``input_shape``, ``num_classes`` and (for token ids) ``vocab_size`` come from the
    data module when the model's constructor takes them and the config does not set them.
    """
    cls = _target_class(cfg.model, "model")
    accepted = inspect.signature(cls).parameters
    extra: dict[str, Any] = {}
    for name in ("input_shape", "num_classes", "vocab_size"):
        if name in accepted and name not in cfg.model and hasattr(datamodule, name):
            extra[name] = getattr(datamodule, name)
    unused = unused_model_keys(cfg)
    node = OmegaConf.masked_copy(cfg.model, [k for k in cfg.model if k != "name" and k not in unused])
    try:
        model = instantiate(node, _convert_="all", **extra)
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise UserError(
            "model",
            str(cfg.model.get("_target_")),
            f"cannot build the model ({type(cause).__name__}: {cause})",
        ) from None
    if not isinstance(model, nn.Module):
        raise UserError("model._target_", cfg.model._target_, "must build a torch.nn.Module")
    return model
