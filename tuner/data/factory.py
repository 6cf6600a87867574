"""Building the data module named by ``data._target_`` (``conf/data``), prepared and set up."""

from __future__ import annotations

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tuner.config.nodes import target_class
from tuner.errors import UserError


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The data module named by ``data._target_``, prepared and set up for fitting."""
    target_class(cfg.data, "data")
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
