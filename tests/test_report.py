"""Plots and report of a study: the recommended LR, every artifact, a command that reproduces."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import optuna
import pytest
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import TINY
from tuner.tracking.tracker import local_uri

PLOTS = (
    "optimization_history",
    "metric_vs_lr",
    "parallel_coordinates",
    "param_importances",
    "learning_curves",
    "lr_schedules",
)


def _journal(tmp_path: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))


def _check_png(path: Path) -> None:
    with Image.open(path) as image:
        image.load()
        assert image.width > 200 and image.height > 200, path
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 10, f"{path} is blank"


def _add_finder_and_lr_free_runs(tmp_path: Path, study: str) -> None:
    """Runs as the LR finder and the LR-free arms log them (tags are their contract)."""
    client = MlflowClient(tracking_uri=local_uri(tmp_path / "runs"))
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None
    finder = client.create_run(
        experiment.experiment_id, run_name="lr-finder", tags={"tuner.role": "finder", "tuner.study": study}
    )
    fig = Figure(figsize=(5, 3))
    ax = fig.add_subplot()
    lrs = [10 ** (-5 + i / 10) for i in range(50)]
    ax.plot(lrs, [2.3 - 0.3 * math.log10(lr / 1e-5) + (lr > 0.03) * 5 for lr in lrs])
    ax.set_xscale("log")
    png = tmp_path / "lr_finder.png"
    fig.savefig(png)
    client.log_artifact(finder.info.run_id, str(png), "plots")
    client.set_terminated(finder.info.run_id)
    arm = client.create_run(
        experiment.experiment_id, run_name="prodigy", tags={"tuner.arm": "lr_free", "tuner.study": study}
    )
    client.log_param(arm.info.run_id, "optimizer", "prodigy")
    client.log_metric(arm.info.run_id, "val_acc", 0.4242)
    client.log_metric(arm.info.run_id, "test_acc", 0.4141)
    client.set_terminated(arm.info.run_id)


@pytest.mark.slow
def test_report_of_the_default_study(tmp_path, run_cli):
    name = "report-default"
    code, out, err = run_cli(*TINY, "study.n_trials=6", f"study.name={name}")
    assert code == 0, out + err
    study_dir = tmp_path / "runs" / "studies" / name
    assert f"Report and plots: {study_dir / 'report.md'}" in out
    # The end of the study logged the plots and the report to the parent run.
    client = MlflowClient(tracking_uri=local_uri(tmp_path / "runs"))
    parent = client.search_runs(
        [client.get_experiment_by_name(name).experiment_id], filter_string="tags.`tuner.role` = 'study'"
    )[0]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {f"plots/{p}.png" for p in PLOTS} <= logged
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} == {
        "report/report.md",
        "report/report.html",
    }

    _add_finder_and_lr_free_runs(tmp_path, name)
    study = optuna.load_study(study_name=name, storage=_journal(tmp_path))
    study.ask()  # a worker in the middle of a trial: the report reads a running study
    code, out, err = run_cli(*TINY, "mode=report", f"study.name={name}")
    assert code == 0, out + err
    md = (study_dir / "report.md").read_text()
    page = (study_dir / "report.html").read_text()
    assert "still running (1 trial(s) in progress)" in md

    # The recommended LR lies inside the LR range of the top trials: those within tolerance.
    found = re.search(r"\*\*Recommended lr = ([0-9.e+-]+)\*\*", md)
    assert found, md
    recommended = float(found.group(1))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(t.value for t in complete)
    top = [t.params["lr"] for t in complete if t.value >= best - 0.02 * abs(best)]
    assert min(top) * 0.999 <= recommended <= max(top) * 1.001
    assert f"recommended lr: {recommended:.3g}" in out

    # Every artifact is listed, exists, and each PNG opens and shows something.
    for stem in (*PLOTS, "finder"):
        assert f"(plots/{stem}.png)" in md and f"src='plots/{stem}.png'" in page
        _check_png(study_dir / "plots" / f"{stem}.png")
    for stem in PLOTS:
        assert f"(plots/{stem}.html)" in md
        assert "plotly" in (study_dir / "plots" / f"{stem}.html").read_text()[:5000].lower()
    assert (study_dir / "plots" / "plotly.min.js").exists()

    assert "| LR-free: prodigy | prodigy | 0.4242 | 0.4141 |" in md
    assert "## Sensitivity per parameter" in md and "### warmup_fraction" in md

    # The printed command trains the best trial again, to the same value.
    command = re.search(r"```bash\n(python -m tuner .*)\n```", md)
    assert command, md
    args = shlex.split(command.group(1))[3:]
    code, out, err = run_cli(*args)
    assert code == 0, out + err
    again = optuna.load_study(study_name=args[-1].split("=", 1)[1], storage=_journal(tmp_path))
    assert len(again.trials) == 1
    assert again.trials[0].value == pytest.approx(study.best_value, abs=1e-6)


def test_report_names_a_missing_study(run_cli, tmp_path):
    code, _out, err = run_cli("mode=report", "study.name=nope")
    assert code == 2
    assert err.startswith("error: study.name='nope': no such study in")
    assert len(err.strip().splitlines()) == 1


def test_report_of_a_memory_study_is_refused(run_cli):
    code, _out, err = run_cli("mode=report", "study.name=x", "storage=memory")
    assert code == 2 and err.startswith("error: storage.backend='memory':")


@pytest.mark.parametrize(
    ("override", "key"),
    [("report.tolerance=-1", "report.tolerance"), ("report.tolerance_kind=percent", "report.tolerance_kind")],
)
def test_bad_report_settings_are_one_line(run_cli, override, key):
    code, _out, err = run_cli(override, "study.name=x")
    assert code == 2 and err.startswith(f"error: {key}=")
