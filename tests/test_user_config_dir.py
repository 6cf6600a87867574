"""``--config-dir`` / ``-cd`` and ``--config-name``: a person's own config folder extends the package's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tuner.cli import CONFIG_DIR_ENV
from tuner.report.reproduce import reproduce_command


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    """A project's conf/: one option in search, experiment, model and data, and a primary config."""
    conf = tmp_path / "project" / "conf"
    _write(
        conf / "search" / "my_space.yaml",
        {"params": {"lr": {"path": "optimizer.lr", "low": 0.002, "high": 0.02, "log": True}}},
    )
    _write(
        conf / "model" / "wide_mlp.yaml",
        {"_target_": "tuner.models.MLP", "name": "wide_mlp", "hidden": [512]},
    )
    _write(
        conf / "data" / "small_digits.yaml",
        {"_target_": "tuner.data.Digits", "name": "small_digits", "batch_size": 32},
    )
    experiment = {
        "defaults": [{"override /model": "wide_mlp"}, {"override /search": "my_space"}],
        "study": {"n_trials": 5},
    }
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "mine.yaml").write_text("# @package _global_\n" + yaml.safe_dump(experiment))
    primary = {"defaults": ["config", {"override data": "small_digits"}, "_self_"], "seed": 11}
    _write(conf / "project.yaml", primary)
    return conf


def _cfg(run_cli, *args: str) -> dict:
    code, out, err = run_cli(*args, "--cfg")
    assert code == 0, err
    return yaml.safe_load(out)


@pytest.mark.parametrize("flag", ["--config-dir", "-cd"])
def test_its_groups_extend_the_packages(run_cli, user_conf, flag):
    cfg = _cfg(run_cli, flag, str(user_conf), "search=my_space", "model=wide_mlp", "data=small_digits")
    assert cfg["search"]["params"]["lr"]["high"] == 0.02
    assert cfg["model"]["hidden"] == [512]
    assert cfg["data"]["batch_size"] == 32
    # The package's options are all still there.
    assert _cfg(run_cli, flag, str(user_conf), "model=cnn1d")["model"]["kernel_size"] == 5
    assert CONFIG_DIR_ENV not in os.environ  # nothing lingers after the command


def test_a_relative_folder_and_the_equals_spelling(run_cli, user_conf, monkeypatch):
    monkeypatch.chdir(user_conf.parent)
    cfg = _cfg(run_cli, "--config-dir=conf", "experiment=mine")
    assert cfg["model"]["name"] == "wide_mlp"
    assert cfg["search"]["params"]["lr"]["low"] == 0.002
    assert cfg["study"]["n_trials"] == 5


def test_config_name_picks_a_primary_config_that_lists_the_packages(run_cli, user_conf):
    cfg = _cfg(run_cli, "-cd", str(user_conf), "--config-name", "project")
    assert cfg["seed"] == 11 and cfg["data"]["name"] == "small_digits"
    assert cfg["optimizer"]["name"] == "adam"  # the package's defaults came along
    cfg = _cfg(run_cli, "-cd", str(user_conf), "-cn", "project", "experiment=mine", "seed=3")
    assert (cfg["seed"], cfg["model"]["name"]) == (3, "wide_mlp")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--config-dir", "no/such/conf"], "--config-dir='no/such/conf': no such folder"),
        (["-cd", "{conf}", "--config-name", "nope"], "--config-name='nope'"),
        (["-cd", "{conf}", "search=nope"], "my_space"),  # the options listed include the person's
    ],
)
def test_mistakes_give_one_line_and_exit_2(run_cli, user_conf, tmp_path, args, named):
    code, _out, err = run_cli(*(a.format(conf=user_conf) for a in args), "study.n_trials=1")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and named in err, err
    assert not (tmp_path / "runs").exists()


def test_a_flag_without_its_value_prints_the_usage(run_cli):
    code, _out, err = run_cli("--config-dir")
    assert code == 2 and "--config-dir DIR" in err


def test_the_reproduce_command_names_the_folder_and_its_options(user_conf, compose_cfg, monkeypatch):
    from omegaconf import OmegaConf

    from tuner.cli import config_dir

    monkeypatch.setenv(CONFIG_DIR_ENV, str(user_conf))
    cfg = OmegaConf.to_container(compose_cfg("model=wide_mlp", "data=small_digits"), resolve=True)
    args = reproduce_command(cfg, conf=config_dir(), study_name="again", user_dir=user_conf)
    assert args[:2] == ["--config-dir", str(user_conf)]
    assert "model=wide_mlp" in args and "data=small_digits" in args
