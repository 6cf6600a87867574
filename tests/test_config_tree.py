"""Every option of every config group composes, validates and builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from tuner.cli import config_dir
from tuner.data.factory import build_datamodule
from tuner.models.factory import build_model
from tuner.storage.storages import build_storage
from tuner.study.optuna_study import build_pruner, build_sampler
from tuner.validate import validate

GROUPS = sorted(p.name for p in Path(config_dir()).iterdir() if p.is_dir() and not p.name.startswith("_"))


def _options(group: str) -> list[str]:
    # A name starting with "_" holds settings the options share (conf/search/_settings.yaml).
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_every_group_the_issue_names_exists():
    for group in (
        "data",
        "model",
        "optimizer",
        "schedule",
        "search",
        "sampler",
        "pruner",
        "study",
        "storage",
        "trainer",
        "tracking",
        "paths",
        "hydra",
        "experiment",
        "debug",
    ):
        assert group in GROUPS and _options(group), group


def _file_data(option: str, folder: Path) -> list[str]:
    """``data=file`` needs a file: a small .npz of 10-class data."""
    if option != "file":
        return []
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz", x=rng.normal(size=(400, 12)), y=rng.integers(0, 10, size=400))
    return [f"data.path={folder / 'data.npz'}"]


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_option_composes_and_validates(compose_cfg, tmp_path, group, option):
    overrides = [f"{group}={option}", *(_file_data(option, tmp_path) if group == "data" else [])]
    if group == "sampler" and option == "grid":
        overrides.append("search=lr")
    cfg = compose_cfg(*overrides)
    specs = validate(cfg)
    if group == "sampler":
        build_sampler(cfg, specs)
    elif group == "pruner":
        build_pruner(cfg)
    elif group == "storage" and option != "postgres":
        build_storage(cfg)


@pytest.mark.parametrize("option", _options("data"))
def test_data_and_models_instantiate(compose_cfg, tmp_path, option):
    extra = _file_data(option, tmp_path)
    cfg = compose_cfg(f"data={option}", *extra)
    datamodule = build_datamodule(cfg)
    x, y = next(iter(datamodule.train_dataloader()))
    assert len(x) == len(y) == cfg.data.batch_size
    for model in _options("model"):
        net = build_model(compose_cfg(f"data={option}", f"model={model}", *extra), datamodule)
        assert net(x).shape == (len(x), datamodule.num_classes)
    assert instantiate  # the configs use Hydra's _target_ convention throughout
