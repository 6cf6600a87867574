"""Building the model named by ``model._target_`` (``conf/model``), with the sizes the data module
gives; the data module itself is built in :mod:`tuner.data.factory`."""

from __future__ import annotations

import inspect
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from tuner.config.nodes import target_class
from tuner.errors import UserError


def unused_model_keys(cfg: DictConfig) -> list[str]:
    """Model keys the model's constructor does not take; they are left out when it is built.

    Overriding only ``model._target_`` leaves the previous option's arguments behind
    (``channels`` of ``model=cnn1d`` under a person's own class).
    """
    accepted = inspect.signature(target_class(cfg.model, "model")).parameters
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
    cls = target_class(cfg.model, "model")
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
