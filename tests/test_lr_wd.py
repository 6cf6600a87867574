"""search=lr_wd: the LR and the weight decay on log scales, and the report's LR x weight-decay plot."""

from __future__ import annotations

from PIL import Image

from tests.conftest import TINY
from tuner.validate import validate


def test_the_preset_searches_both_on_log_scales_up_to_a_decay_of_one(compose_cfg):
    specs = {s.name: s for s in validate(compose_cfg("search=lr_wd", "optimizer=adamw"))}
    assert set(specs) == {"lr", "weight_decay"}
    lr, wd = specs["lr"], specs["weight_decay"]
    assert lr.log and wd.log
    assert (lr.path, wd.path) == ("optimizer.lr", "optimizer.weight_decay")
    assert wd.high == 1.0 and wd.low <= 1e-4


def test_a_study_draws_its_best_trials_in_the_lr_weight_decay_plane(tmp_path, run_cli):
    code, out, err = run_cli(*TINY, "search=lr_wd", "optimizer=adamw", "study.n_trials=4", "study.name=lrwd")
    assert code == 0, out + err
    study = tmp_path / "runs" / "studies" / "lrwd"
    png = study / "plots" / "lr_weight_decay.png"
    with Image.open(png) as image:
        assert image.width > 400 and len(image.convert("RGB").getcolors(1 << 16) or range(99)) > 10
    assert (study / "plots" / "lr_weight_decay.html").is_file()
    assert "plots/lr_weight_decay.png" in (study / "report.md").read_text()


def test_a_study_without_a_searched_decay_has_no_such_plot(tmp_path, run_cli):
    code, out, err = run_cli(*TINY, "search=lr", "study.n_trials=2", "study.name=plain")
    assert code == 0, out + err
    assert not (tmp_path / "runs" / "studies" / "plain" / "plots" / "lr_weight_decay.png").exists()
    assert "weight decay plane" not in (tmp_path / "runs" / "studies" / "plain" / "report.md").read_text()
