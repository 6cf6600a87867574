"""Every kind of bad input: one line naming the key, exit code 2, no traceback, nothing made."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from _pytest.mark.structures import ParameterSet

from tests.conftest import TINY
from tests.mlflow_server import free_port

PASSWORD = "hunter2-not-for-logs"
#: TINY without the MNIST-1D size, for cases on the file data option.
TINY_FILE = [o for o in TINY if not o.startswith("data.")]

# (id, overrides, the key the message must name). {tmp}, {closed} and {pw} are filled in.
CASES = [
    ("unknown-group-option", ["optimizer=adamm"], "optimizer"),
    ("unknown-sampler-option", ["sampler=annealing"], "sampler"),
    ("misspelled-key", ["study.n_trial=3"], "study.n_trial"),
    ("misspelled-nested-key", ["trainer.max_step=10"], "trainer.max_step"),
    ("missing-required-value", ["data=file"], "data.path"),
    ("bounds-low-above-high", ["search.params.lr.low=0.5"], "search.params.lr.low"),
    ("log-scale-low-zero", ["search.params.lr.low=0"], "search.params.lr.low"),
    ("log-scale-low-negative", ["search.params.lr.low=-1e-3"], "search.params.lr.low"),
    (
        "log-scale-switched-on-at-zero",
        ["+search.params.warmup_fraction.log=true"],
        "search.params.warmup_fraction.low",
    ),
    ("categorical-without-choices", ["search.params.schedule.choices=[]"], "search.params.schedule.choices"),
    (
        "condition-on-missing-parent",
        ["+search.params.warmup_fraction.when={{nope: [1]}}"],
        "search.params.warmup_fraction.when",
    ),
    ("search-path-missing", ["search.params.lr.path=optimizer.lrr"], "search.params.lr.path"),
    ("widen-not-a-switch", ["search.widen=sometimes"], "search.widen"),
    ("widen-negative-decades", ["search.widen_max_decades=-1"], "search.widen_max_decades"),
    ("widen-after-zero", ["search.widen_after=0"], "search.widen_after"),
    (
        "finder-enqueue-negative",
        ["search.from_finder=true", "search.finder_enqueue=-1"],
        "search.finder_enqueue",
    ),
    ("tie-break-not-validation", ["study.tie_break=test_loss"], "study.tie_break"),
    ("unknown-optimizer", ["optimizer.name=adamm"], "optimizer.name"),
    ("unknown-schedule", ["schedule.name=cosine_of_doom"], "schedule.name"),
    ("unknown-sampler", ["sampler.name=annealing"], "sampler.name"),
    ("unknown-pruner", ["pruner.name=guillotine"], "pruner.name"),
    ("warmup-longer-than-training", ["schedule.warmup_steps=100"], "schedule.warmup_steps"),
    (
        "searched-warmup-past-training",
        ["search.params.warmup_fraction.high=1.5"],
        "search.params.warmup_fraction.high",
    ),
    ("n-trials-zero", ["study.n_trials=0"], "study.n_trials"),
    ("n-trials-negative", ["study.n_trials=-2"], "study.n_trials"),
    ("timeout-zero", ["study.timeout=0"], "study.timeout"),
    ("timeout-negative", ["study.timeout=-5"], "study.timeout"),
    ("max-steps-zero", ["trainer.max_steps=0"], "trainer.max_steps"),
    (
        "never-validates",
        ["trainer.max_steps=30", "trainer.val_check_interval=40"],
        "trainer.val_check_interval",
    ),
    ("metric-never-logged", ["study.metric=val_f1"], "study.metric"),
    ("direction-sideways", ["study.direction=up"], "study.direction"),
    ("storage-url-malformed", ["storage=sqlite", "storage.url=not-a-url"], "storage.url"),
    (
        "storage-url-unreachable",
        ["storage=postgres", "storage.url=postgresql+psycopg://tuner:{pw}@127.0.0.1:{closed}/tuner"],
        "storage.url",
    ),
    ("storage-path-under-a-file", ["storage.path={tmp}/a-file/optuna.journal"], "storage.path"),
    ("tracking-uri-unreachable", ["tracking.uri=http://tuner:{pw}@127.0.0.1:{closed}"], "tracking.uri"),
    ("tracking-uri-unknown-scheme", ["tracking.uri=ftp://127.0.0.1/mlflow"], "tracking.uri"),
    ("model-target-not-importable", ["model._target_=my_lab.models.Net"], "model._target_"),
    ("data-target-not-importable", ["data._target_=my_lab.data.Set"], "data._target_"),
    ("data-path-missing", ["data=file", "data.path={tmp}/no-such.npz"], "data.path"),
    ("data-file-without-labels", ["data=file", "data.path={tmp}/no-labels.npz"], "data.y_key"),
    ("population-too-large", ["study.population=1000000000"], "study.population"),
    ("study-exists-with-another-space", ["study.name=taken", "search=lr"], "study.name"),
    ("unknown-mode", ["mode=train"], "mode"),
    ("stop-on-failure-not-bool", ["study.stop_on_failure=maybe"], "study.stop_on_failure"),
    ("sidecar-not-a-choice", ["tracking.sidecar=maybe"], "tracking.sidecar"),
    # issue 15, 5-6: trainer keys, checked before the study rather than by Lightning.
    pytest.param(
        "accelerator-gpu-without-one",
        ["trainer.accelerator=gpu"],
        "trainer.accelerator",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
    ),
    ("accelerator-mps-off-a-mac", ["trainer.accelerator=mps"], "trainer.accelerator"),
    ("accelerator-bogus", ["trainer.accelerator=bogus"], "trainer.accelerator"),
    ("precision-bogus", ["trainer.precision=bogus"], "trainer.precision"),
    (
        "precision-16-mixed-on-cpu",
        ["trainer.accelerator=cpu", "trainer.precision=16-mixed"],
        "trainer.precision",
    ),
    ("strategy-bogus", ["trainer.strategy=bogus"], "trainer.strategy"),
    ("devices-zero", ["trainer.devices=0"], "trainer.devices"),
    ("devices-negative", ["trainer.devices=-1"], "trainer.devices"),
    ("devices-empty-list", ["trainer.devices=[]"], "trainer.devices"),
    ("devices-list-on-cpu", ["trainer.accelerator=cpu", "trainer.devices=[0]"], "trainer.devices"),
    ("gradient-clip-negative", ["trainer.gradient_clip_val=-1.0"], "trainer.gradient_clip_val"),
    ("gradient-clip-text", ["trainer.gradient_clip_val=lots"], "trainer.gradient_clip_val"),
    # 11: credentials in the URL are sent as basic auth, not read as the host (no gaierror).
    ("tracking-uri-at-in-password", ["tracking.uri=http://u:{pw}@PW9@127.0.0.1:{closed}"], "tracking.uri"),
    # 12: the study name becomes folders; it must be one path segment.
    ("study-name-climbs-out", ["study.name=../../evil"], "study.name"),
    ("study-name-absolute", ["study.name=/tmp/evil"], "study.name"),
    # Local workers start before the checks; their log folder is under the name too.
    (
        "study-name-climbs-out-local",
        ["launcher=local", "launcher.workers=1", "study.name=../../evil"],
        "study.name",
    ),
    ("study-name-with-space", ["study.name=my study"], "study.name"),
    ("study-name-dot-dot", ["study.name=.."], "study.name"),
    # 13: what Hydra's lexer cannot read names the override and says how to quote it.
    ("unicode-unquoted", ["study.name=été"], "study.name"),
    ("query-password-unquoted", ["tracking.uri=http://127.0.0.1/?password={pw}"], "tracking.uri"),
    ("quote-inside-value", ["study.name=it's"], "study.name"),
    ("override-without-equals", ["job"], "override"),
    # Found by tests/test_fuzz_cli.py: values of the wrong shape.
    ("group-option-a-number", ["finder=0"], "finder"),
    ("group-option-null", ["model=null"], "model"),
    ("search-param-not-a-mapping", ["search.params.lr=3"], "search.params.lr"),
    ("choices-not-a-list", ["search.params.schedule.choices=5"], "search.params.schedule.choices"),
]


def _made(root: Path) -> tuple[object, ...]:
    """What exists under paths.root: studies and their trials, MLflow runs and experiments, files."""
    studies: dict[str, int] = {}
    journal = root / "optuna.journal"
    if journal.exists():
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(journal)))
        studies = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    runs, experiments = 0, []
    if (root / "mlflow.db").exists():
        with sqlite3.connect(root / "mlflow.db") as db:
            runs = db.execute("select count(*) from runs").fetchone()[0]
            experiments = sorted(
                r[0] for r in db.execute("select name from experiments where name != 'Default'")
            )
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".db")
    files = [f for f in files if f != "optuna.journal"]
    return studies, runs, experiments, files


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "a-file").write_text("not a folder")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "no-labels.npz", x=rng.normal(size=(50, 4)), labels=rng.integers(0, 3, 50))
    return {"tmp": str(tmp_path), "closed": str(free_port()), "pw": PASSWORD}


def _param(case: tuple[str, list[str], str] | ParameterSet) -> ParameterSet:
    if isinstance(case, ParameterSet):
        (name, overrides, key), marks = case.values, case.marks
        return pytest.param(overrides, key, id=str(name), marks=marks)
    name, overrides, key = case
    return pytest.param(overrides, key, id=name)


@pytest.mark.parametrize(("overrides", "key"), [_param(c) for c in CASES])
def test_bad_input_is_one_line_and_makes_nothing(tmp_path, run_cli, places, overrides, key):
    base = TINY_FILE if "data=file" in overrides else TINY
    if key == "study.name":  # the study exists, made by an earlier run with the default space
        assert run_cli(*TINY, "study.name=taken", "study.n_trials=1")[0] == 0
    before = _made(tmp_path / "runs")
    code, out, err = run_cli(*base, *(o.format(**places) for o in overrides))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {key}="), lines[0]
    assert "Traceback" not in out + err
    assert "gaierror" not in err
    assert PASSWORD not in out + err
    assert _made(tmp_path / "runs") == before
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_nothing_is_made_when_the_tracking_server_is_dead(tmp_path, run_cli):
    """Refused before the study (issue 15, 16): not even an empty runs/ folder is left."""
    code, _, err = run_cli(*TINY, f"tracking.uri=http://127.0.0.1:{free_port()}")
    assert code == 2, err
    assert err.startswith("error: tracking.uri=")
    assert not (tmp_path / "runs").exists()


def test_tuner_home_on_a_file_is_blamed_on_tuner_home(tmp_path, run_cli, monkeypatch):
    """Issue 15, 14: the storage path lies under it, but TUNER_HOME is what to fix."""
    (tmp_path / "home-file").write_text("")
    monkeypatch.setenv("TUNER_HOME", str(tmp_path / "home-file"))
    code, _, err = run_cli(*TINY)
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith("error: TUNER_HOME="), err


@pytest.mark.parametrize("flag", ["--badflag", "--verbose=2"])
def test_an_unknown_flag_is_named(run_cli, flag):
    """Issue 15, 15: the usage alone did not say which flag was wrong."""
    code, out, err = run_cli(flag, *TINY)
    assert code == 2
    assert err.strip().splitlines()[0].startswith(f"error: {flag}: unknown option")
    assert len(err.strip().splitlines()) == 1 and not out


def test_hydra_style_cfg_job_prints_the_config(run_cli):
    code, out, _ = run_cli("--cfg", "job")
    assert code == 0
    assert "study:" in out


def test_the_message_offers_a_new_name_or_a_fresh_start(run_cli):
    assert run_cli(*TINY, "study.name=taken", "study.n_trials=1")[0] == 0
    _, _, err = run_cli(*TINY, "study.name=taken", "search=lr")
    assert "study.name=taken-2" in err
    assert "study.resume=false" in err


def test_debug_shows_the_traceback(run_cli):
    code, _, err = run_cli("--debug", *TINY, "search.params.lr.low=0.5")
    assert code == 2
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("error: search.params.lr.low=")


def test_a_metric_error_leaves_no_run_in_mlflow_and_no_study(tmp_path, run_cli):
    """Caught at the first validation, after the study and its runs existed: all removed."""
    code, out, err = run_cli(*TINY, "study.metric=val_f1", "study.name=metric")
    assert code == 2
    assert "trial 0 running" in out  # it was caught inside the first trial
    assert "val_acc" in err  # and the message lists what the model does log
    with sqlite3.connect(tmp_path / "runs" / "mlflow.db") as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 0
        assert db.execute("select count(*) from experiments where name = 'metric'").fetchone()[0] == 0
    assert not any((tmp_path / "runs").glob("artifacts/**/*.yaml"))
    # Running again with the fix starts clean under the same name.
    assert run_cli(*TINY, "study.name=metric", "study.n_trials=1")[0] == 0
