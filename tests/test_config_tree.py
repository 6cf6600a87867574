"""Every option of every config group composes, validates and builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from tuner.build import build_datamodule, build_model
from tuner.cli import config_dir
from tuner.config import validate
from tuner.study import build_pruner, build_sampler, build_storage

GROUPS = sorted(p.name for p in Path(config_dir()).iterdir() if p.is_dir() and not p.name.startswith("_"))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


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


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_option_composes_and_validates(compose_cfg, group, option):
    overrides = [f"{group}={option}"]
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
def test_data_and_models_instantiate(compose_cfg, option):
    cfg = compose_cfg(f"data={option}")
    datamodule = build_datamodule(cfg)
    x, y = next(iter(datamodule.train_dataloader()))
    assert len(x) == len(y) == cfg.data.batch_size
    for model in _options("model"):
        net = build_model(compose_cfg(f"data={option}", f"model={model}"), datamodule)
        assert net(x).shape == (len(x), datamodule.num_classes)
    assert instantiate  # the configs use Hydra's _target_ convention throughout
