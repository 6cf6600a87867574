"""``search.widen``: a range whose best trials sit at an edge grows, and the report says so."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from tests.conftest import TINY
from tuner.cli import compose
from tuner.report.analysis import robust_lr
from tuner.report.build import _at_edge
from tuner.report.document import Doc
from tuner.report.gather import StudyData
from tuner.search.space import ParamSpec
from tuner.search.widen import WIDEN_ATTR, WideningGP, WideningTPE, edge, short, stored_bounds, widen_step
from tuner.study.narrow import FINDER_ATTR
from tuner.validate import validate

COMPLETE = optuna.trial.TrialState.COMPLETE
LR = ParamSpec("lr", "optimizer.lr", "float", 1e-4, 1e-2, log=True)


def _cfg(**search):
    """The real config tree (search=lr), with ``search.<key>=<value>`` overrides."""
    return compose(
        ["search=lr", *(f"search.{k}={'null' if v is None else v}".lower() for k, v in search.items())]
    )


def _study(lrs, values, *, low=1e-4, high=1e-2):
    """A real in-memory study holding complete trials at ``lrs`` with ``values``."""
    study = optuna.create_study(direction="maximize")
    dist = optuna.distributions.FloatDistribution(low, high, log=True)
    for lr, value in zip(lrs, values, strict=True):
        study.add_trial(optuna.trial.create_trial(params={"lr": lr}, distributions={"lr": dist}, value=value))
    return study


def test_an_edge_needs_two_of_the_best_there():
    assert edge([0.0099, 0.0095, 1e-3], 1e-4, 1e-2) == "upper"
    assert edge([0.0099, 1e-3, 2e-3], 1e-4, 1e-2) is None  # one trial at the edge can be luck
    assert edge([1.1e-4, 1.2e-4, 1e-3], 1e-4, 1e-2) == "lower"


def test_best_trials_at_the_upper_edge_widen_a_decade_and_are_stored():
    study = _study([1e-4, 1e-3, 9e-3, 9.5e-3], [0.1, 0.3, 0.8, 0.9])
    lines: list[str] = []
    specs = widen_step(_cfg(), study, [LR], echo=lines.append)
    assert lines == ["search: lr range widened to [1e-4, 0.1] (best trials at the upper edge)"]
    assert (specs[0].low, specs[0].high) == (1e-4, pytest.approx(0.1))
    assert stored_bounds(study) == {"lr": (1e-4, pytest.approx(0.1))}
    # The same evidence once more: the trials no longer sit at the (new) edge.
    assert widen_step(_cfg(), study, [LR], echo=lines.append)[0].high == pytest.approx(0.1)
    assert len(lines) == 1


def test_too_few_trials_or_widen_off_leave_the_range():
    study = _study([9e-3, 9.5e-3, 9.9e-3], [0.8, 0.9, 0.95])
    assert widen_step(_cfg(), study, [LR], echo=print)[0].high == 1e-2  # 3 < widen_after
    study = _study([1e-3, 9e-3, 9.5e-3, 9.9e-3], [0.1, 0.8, 0.9, 0.95])
    assert widen_step(_cfg(widen=False), study, [LR], echo=print)[0].high == 1e-2


def test_widening_stops_at_the_divergence_point_and_at_max_decades():
    study = _study([1e-3, 9e-3, 9.5e-3, 9.9e-3], [0.1, 0.8, 0.9, 0.95])
    study.set_user_attr(FINDER_ATTR, {"param": "lr", "result": {"divergence": 0.03}})
    assert widen_step(_cfg(), study, [LR], echo=print)[0].high == pytest.approx(0.03)
    study = _study([1e-3, 9e-3, 9.5e-3, 9.9e-3], [0.1, 0.8, 0.9, 0.95])
    assert widen_step(_cfg(widen_max_decades=0.5), study, [LR], echo=print)[0].high == pytest.approx(
        1e-2 * 10**0.5
    )
    # The cap is reached: best trials at the new edge widen no further.
    for lr, value in [(0.031, 0.97), (0.0315, 0.98)]:
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2 * 10**0.5, log=True)},
                value=value,
            )
        )
    assert widen_step(_cfg(widen_max_decades=0.5), study, [LR], echo=print)[0].high == pytest.approx(
        1e-2 * 10**0.5
    )


SAMPLERS = {
    "tpe-group": lambda: WideningTPE(seed=0, n_startup_trials=5, multivariate=True, group=True),
    "tpe-joint": lambda: WideningTPE(seed=0, n_startup_trials=5, multivariate=True),
    "tpe-independent": lambda: WideningTPE(seed=0, n_startup_trials=5),
    "gp": lambda: WideningGP(seed=0, n_startup_trials=5),
}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_the_sampler_draws_from_the_widened_range_and_learns_from_the_old_trials(sampler):
    """Optuna's joint models alone keep the first range (TPE, group) or drop the parameter."""
    study = _study([10 ** (-4 + 2 * i / 11) for i in range(12)], [i / 12 for i in range(12)])
    study.sampler = SAMPLERS[sampler]()
    study.set_user_attr(WIDEN_ATTR, {"lr": {"start": [1e-4, 1e-2], "low": 1e-4, "high": 1.0, "history": []}})
    drawn = []
    for _ in range(12):
        trial = study.ask()
        drawn.append(trial.suggest_float("lr", 1e-4, 1.0, log=True))
        study.tell(trial, 0.0)
    assert max(drawn) > 1e-2  # beyond the old range
    # The old trials still steer it: the best ones lay at the top, so it keeps high.
    assert sorted(drawn)[len(drawn) // 2] > 1e-3


def test_the_report_flags_a_basin_at_an_edge_of_the_search():
    data = StudyData(study=_study([1e-3, 3e-3, 8e-3, 9.8e-3], [0.5, 0.8, 0.94, 0.95]), metric="val_acc")
    basin = robust_lr(data, tolerance=0.02, kind="relative")
    assert basin is not None
    assert basin.searched == (1e-4, 1e-2)
    assert basin.edges == ("upper",)
    doc = Doc("r")
    _at_edge(doc, basin)
    text = doc.markdown()
    assert "At the edge of the search" in text
    assert "may lie above it" in text and "search.params.lr.high" in text
    inside = StudyData(study=_study([1e-3, 2e-3, 3e-3, 9e-3], [0.8, 0.95, 0.94, 0.5]), metric="val_acc")
    middle = robust_lr(inside, tolerance=0.02, kind="relative")
    assert middle is not None and middle.edges == ()


def test_a_study_whose_optimum_lies_above_the_range_finds_it_after_widening(tmp_path: Path, run_cli):
    """SGD on a short budget: the higher the LR up to ~1, the better; the range ends at 0.01."""
    args = (
        *TINY,
        "model=mlp",
        "optimizer=sgd",
        "schedule=constant",
        "search=lr",
        "search.params.lr.low=1e-4",
        "search.params.lr.high=0.01",
        "pruner=none",
        # SGD at 1e-4 barely moves in 15 steps: the not-learning stop would prune the
        # low end, which is beside the point here.
        "trainer.not_learning_after=null",
        "study.name=widen",
        "study.n_trials=10",
    )
    code, out, _ = run_cli(*args)
    assert code == 0, out
    assert "search: lr range widened to [1e-4, 0.1] (best trials at the upper edge)" in out
    study = optuna.load_study(study_name="widen", storage=_journal(tmp_path))
    best = study.best_trial
    assert best.params["lr"] > 0.01  # found where the configured range did not reach
    assert stored_bounds(study)["lr"][1] >= 0.1
    report = (tmp_path / "runs" / "studies" / "widen" / "report.md").read_text()
    assert "search: lr range widened to [1e-4, 0.1] after" in report
    # A resumed study draws from the widened range without widening again for it.
    code, out, _ = run_cli(*args[:-1], "study.n_trials=11")
    assert code == 0, out
    last = optuna.load_study(study_name="widen", storage=_journal(tmp_path)).trials[-1]
    assert last.distributions["lr"].high >= 0.1


def _journal(tmp_path: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))


def test_short_bounds_read_as_people_write_them():
    assert [short(x) for x in (1e-4, 0.03, 3.0, 2.5e-5)] == ["1e-4", "0.03", "3", "2.5e-5"]
    assert math.isclose(float(short(0.1)), 0.1)


def test_workers_draw_from_bounds_another_process_widened(tmp_path: Path, run_cli):
    args = (
        *TINY,
        "model=mlp",
        "search=lr",
        "search.params.lr.high=0.01",
        "pruner=none",
        "trainer.not_learning_after=null",
        "study.name=shared",
    )
    assert run_cli(*args, "study.n_trials=1")[0] == 0
    study = optuna.load_study(study_name="shared", storage=_journal(tmp_path))
    step = {"after": 1, "side": "upper", "low": 1e-5, "high": 0.1}
    study.set_user_attr(
        WIDEN_ATTR, {"lr": {"start": [1e-5, 0.01], "history": [step], "low": 1e-5, "high": 0.1}}
    )
    code, out, _ = run_cli(*args, "study.n_trials=3", "launcher=local", "launcher.workers=2")
    assert code == 0, out
    study = optuna.load_study(study_name="shared", storage=_journal(tmp_path))
    # A worker may ask for one trial too many and give it up (a surplus, with no params).
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert [t.distributions["lr"].high for t in trials] == pytest.approx([0.01, 0.1, 0.1])


def test_the_launcher_says_when_a_worker_widened_the_range():
    from io import StringIO

    from tuner.launch.monitor import StudyMonitor

    study = _study([1e-3], [0.5])
    stream = StringIO()
    monitor = StudyMonitor(study, total=4, tracker=None, grace=10, stream=stream)  # type: ignore[arg-type]
    monitor.poll()
    assert "widened" not in stream.getvalue()
    step = {"after": 4, "side": "upper", "low": 1e-4, "high": 0.1}
    study.set_user_attr(
        WIDEN_ATTR, {"lr": {"start": [1e-4, 0.01], "history": [step], "low": 1e-4, "high": 0.1}}
    )
    monitor.poll()
    monitor.poll()
    assert (
        stream.getvalue().count("search: lr range widened to [1e-4, 0.1] (best trials at the upper edge)")
        == 1
    )


def test_a_bound_past_the_parameters_domain_is_not_taken():
    """decay_to is a multiplier in (0, 1]: its range 1e-3..0.3 may not grow to 3."""
    cfg = compose(["search=lr_decay"])
    specs = validate(cfg)
    study = optuna.create_study(direction="maximize")
    dists = {
        "lr": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True),
        "decay": optuna.distributions.CategoricalDistribution(["constant", "exponential"]),
        "decay_to": optuna.distributions.FloatDistribution(1e-3, 0.3, log=True),
    }
    for decay_to, value in [(0.29, 0.9), (0.28, 0.91), (0.01, 0.5), (0.02, 0.4)]:
        params = {"lr": 1e-3, "decay": "exponential", "decay_to": decay_to}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    lines: list[str] = []
    widened = {s.name: s for s in widen_step(cfg, study, specs, echo=lines.append)}
    assert widened["decay_to"].high == 0.3 and not lines
