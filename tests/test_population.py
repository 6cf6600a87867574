"""Population trials: each member trains exactly as its trial alone would, and is recorded as one.

The references are single trials through ``run_trial`` with the same seed and batches;
curves are read back from real MLflow runs, pruning comes from real Optuna pruners.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import mlflow
import optuna
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from tests.conftest import TINY, logged_points
from tuner.data.factory import build_datamodule
from tuner.study.population import run_population
from tuner.tracking.tracker import Tracker, TrialRun, local_uri
from tuner.training.trial import run_trial

SMALL = [
    "model=mlp",
    "data.num_samples=600",
    "trainer.max_steps=60",
    "trainer.val_check_interval=20",
    "tracking.step_flush_every=20",
]


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module: creating its tables takes seconds."""
    uri = local_uri(tmp_path_factory.mktemp("mlflow"))
    Tracker(uri, experiment="setup").close()
    return uri


def _variants(base: DictConfig, changes: Sequence[dict[str, object]]) -> list[DictConfig]:
    out = []
    for change in changes:
        cfg = OmegaConf.create(OmegaConf.to_container(base, resolve=True))
        for key, value in change.items():
            OmegaConf.update(cfg, key, value, merge=False)
        out.append(cfg)
    return out


def _curves(tracker: Tracker, run: TrialRun) -> dict[str, list[float]]:
    out = {}
    for key in ("train_loss", "lr", "val_loss"):
        history = sorted(tracker.client.get_metric_history(run.run_id, key), key=lambda m: m.step)
        out[key] = [m.value for m in history]
    return out


def _train(
    mlflow_uri: str,
    cfgs: list[DictConfig],
    *,
    trials: Sequence[optuna.Trial | None] | None = None,
) -> tuple[list, list[dict[str, list[float]]], list, list[dict[str, list[float]]]]:
    """The configs trained as one population and each alone; outcomes and MLflow curves of both."""
    datamodule = build_datamodule(cfgs[0])
    # Artifacts beside the store: without a root MLflow puts them under ./mlruns.
    artifacts = Path(mlflow_uri.removeprefix("sqlite:///")).parent / "artifacts"
    tracker = Tracker(mlflow_uri, experiment=f"eq-{id(cfgs)}", artifact_root=artifacts)
    parent = tracker.parent_run("eq", params={})

    def run(label: str) -> TrialRun:
        return tracker.start_trial(parent, study_name="eq", number=0, params={"who": label}, config_yaml="")

    pop_runs = [run(f"member-{i}") for i in range(len(cfgs))]
    pop = run_population(cfgs, datamodule, trials=trials or [None] * len(cfgs), runs=pop_runs)
    solo_runs = [run(f"alone-{i}") for i in range(len(cfgs))]
    solo = [run_trial(cfg, datamodule, trial=None, run=r) for cfg, r in zip(cfgs, solo_runs, strict=True)]
    tracker.close()  # waits for every write
    return (
        pop,
        [_curves(tracker, r) for r in pop_runs],
        solo,
        [_curves(tracker, r) for r in solo_runs],
    )


def _same_curve(member: list[float], alone: list[float]) -> None:
    assert len(member) == len(alone)
    torch.testing.assert_close(torch.tensor(member), torch.tensor(alone), rtol=1e-4, atol=1e-5)


def test_adam_constant_lr_members_equal_their_single_trials(compose_cfg, mlflow_uri):
    base = compose_cfg(*SMALL, "optimizer=adam", "schedule=constant")
    cfgs = _variants(base, [{"optimizer.lr": lr} for lr in (3e-4, 1e-3, 3e-3, 1e-2)])
    pop, pop_curves, solo, solo_curves = _train(mlflow_uri, cfgs)
    for member, alone, m_curve, a_curve in zip(pop, solo, pop_curves, solo_curves, strict=True):
        assert member.state == alone.state == "COMPLETE"
        assert len(m_curve["train_loss"]) == 60
        _same_curve(m_curve["train_loss"], a_curve["train_loss"])
        _same_curve(m_curve["val_loss"], a_curve["val_loss"])
        assert m_curve["lr"] == a_curve["lr"]
        assert member.value == pytest.approx(alone.value, abs=1e-6)
        assert member.metrics == pytest.approx(alone.metrics, rel=1e-5)


def test_sgd_warmup_cosine_members_equal_their_single_trials(compose_cfg, mlflow_uri):
    base = compose_cfg(*SMALL, "optimizer=sgd", "schedule=warmup_cosine")
    changes = [
        {"optimizer.lr": 0.02, "schedule.warmup_fraction": 0.05},
        {"optimizer.lr": 0.1, "schedule.warmup_fraction": 0.3},
        {"optimizer.lr": 0.05, "schedule.warmup_fraction": 0.0, "schedule.min_lr_ratio": 0.1},
    ]
    pop, pop_curves, solo, solo_curves = _train(mlflow_uri, _variants(base, changes))
    for member, alone, m_curve, a_curve in zip(pop, solo, pop_curves, solo_curves, strict=True):
        assert member.state == alone.state == "COMPLETE"
        _same_curve(m_curve["train_loss"], a_curve["train_loss"])
        assert m_curve["lr"] == pytest.approx(a_curve["lr"], rel=1e-12)
    # Each member warmed up on its own schedule.
    assert pop_curves[1]["lr"][0] < pop_curves[0]["lr"][0] < pop_curves[2]["lr"][0]


def test_cnn_members_equal_their_single_trials(compose_cfg, mlflow_uri):
    """Convolutions over stacked weights run as grouped convolutions: the same sums in
    another order. In float32 that order's rounding (~1e-7 a sum) is amplified by every
    step that follows, by how much depends on the CPU's kernels (1.2e-3 after 40 steps on
    one machine). In float64 the same rounding stays ~1e-15 and amplified alike stays far
    below the tolerance: what is checked is the math, not one CPU's summation order."""
    base = compose_cfg(
        *SMALL, "model=cnn1d", "optimizer=adamw", "trainer.max_steps=40", "trainer.precision=64-true"
    )
    cfgs = _variants(base, [{"optimizer.lr": lr} for lr in (1e-3, 1e-2)])
    _pop, pop_curves, _solo, solo_curves = _train(mlflow_uri, cfgs)
    # The worst float32 drift seen, 1.2e-3 at step 38, is ~1e4 float32 epsilons: the same
    # amplification of float64's epsilon, with a factor of the step count to spare.
    steps = 40
    bound = steps * 1e4 * torch.finfo(torch.float64).eps  # ~9e-11
    for m_curve, a_curve in zip(pop_curves, solo_curves, strict=True):
        assert len(m_curve["train_loss"]) == len(a_curve["train_loss"]) == steps
        member = torch.tensor(m_curve["train_loss"], dtype=torch.float64)
        alone = torch.tensor(a_curve["train_loss"], dtype=torch.float64)
        assert (member - alone).abs().max().item() <= bound


def test_a_member_pruned_half_way_leaves_the_others_untouched(compose_cfg, mlflow_uri):
    base = compose_cfg(
        *SMALL,
        "optimizer=adam",
        "schedule=constant",
        "trainer.max_steps=80",
        "study.metric=val_loss",
        "study.direction=minimize",
    )
    cfgs = _variants(base, [{"optimizer.lr": lr} for lr in (1e-3, 1e-6, 5e-4)])
    # A real pruner: from step 30 on, a val_loss above 2.2 (chance is 2.30) is pruned.
    study = optuna.create_study(
        direction="minimize", pruner=optuna.pruners.ThresholdPruner(upper=2.2, n_warmup_steps=30)
    )
    trials = [study.ask() for _ in cfgs]
    pop, pop_curves, solo, solo_curves = _train(mlflow_uri, cfgs, trials=trials)
    assert [o.state for o in pop] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert pop[1].reason == "pruned at step 40 by the pruner"
    assert pop[1].steps == 40
    assert len(pop_curves[1]["train_loss"]) == 40
    _same_curve(pop_curves[1]["train_loss"], solo_curves[1]["train_loss"][:40])
    for i in (0, 2):
        assert pop[i].steps == 80
        _same_curve(pop_curves[i]["train_loss"], solo_curves[i]["train_loss"])
        assert pop[i].value == pytest.approx(solo[i].value, abs=1e-6)
    reported = [dict(study._storage.get_trial(t._trial_id).intermediate_values) for t in trials]
    assert sorted(reported[1]) == [20, 40]
    assert sorted(reported[0]) == [20, 40, 60, 80]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(
            [{"optimizer.name": "adam"}, {"optimizer.name": "sgd", "optimizer.lr": 0.05}], id="adam+sgd"
        ),
        pytest.param(
            [{"optimizer.name": n, "optimizer.lr": 1e-3} for n in ("rmsprop", "adagrad")],
            id="rmsprop+adagrad",
        ),
        pytest.param(
            [{"optimizer.name": "adadelta", "optimizer.lr": lr} for lr in (0.5, 1.0)], id="adadelta"
        ),
        pytest.param(
            [{"optimizer.name": "schedulefree_adamw", "optimizer.lr": lr} for lr in (1e-3, 3e-3)],
            id="schedulefree",
        ),
        pytest.param(
            [
                {"optimizer.name": "prodigy", "optimizer.lr": 1.0},
                {"optimizer.name": "prodigy", "optimizer.lr": 0.5},
            ],
            id="prodigy",
        ),
        pytest.param(
            [{"optimizer.lr": lr, "trainer.gradient_clip_val": c} for lr, c in ((1e-2, 0.1), (1e-2, None))],
            id="clipping",
        ),
        pytest.param(
            [{"schedule.name": "plateau", "schedule.patience": 1}, {"schedule.name": "linear"}],
            id="plateau+linear",
        ),
    ],
)
def test_every_optimizer_and_schedule_trains_per_member(compose_cfg, changes):
    base = compose_cfg(
        *SMALL,
        "optimizer=adam",
        "schedule=warmup_cosine",
        "trainer.max_steps=40",
        "trainer.val_check_interval=10",
    )
    cfgs = _variants(base, changes)
    datamodule = build_datamodule(base)
    pop = run_population(cfgs, datamodule, trials=[None] * len(cfgs), runs=[None] * len(cfgs))
    for cfg, member in zip(cfgs, pop, strict=True):
        alone = run_trial(cfg, datamodule, trial=None, run=None)
        assert (member.state, member.steps) == (alone.state, alone.steps)
        assert member.value == pytest.approx(alone.value, abs=2e-3)
        assert member.metrics["test_loss"] == pytest.approx(alone.metrics["test_loss"], rel=1e-3)


# ------------------------------------------------------------------ the command line


def _runs(tmp_path: Path, study: str) -> list:
    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    runs = mlflow.search_runs(experiment_names=[study], output_format="list")
    return [r for r in runs if r.data.tags.get("tuner.role") == "trial"]


def _study(tmp_path: Path, name: str) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def test_population_study_records_every_trial_as_a_single_one(tmp_path, run_cli):
    code, out, err = run_cli(
        *TINY, "model=mlp", "study.n_trials=5", "study.population=4", "study.name=pop", "pruner=none"
    )
    assert code == 0, err
    assert "note:" not in out
    study = _study(tmp_path, "pop")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 5
    runs = {r.info.run_id: r for r in _runs(tmp_path, "pop")}
    assert len(runs) == 5
    client = mlflow.MlflowClient()
    for trial in study.trials:
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["tuner.trial"] == str(trial.number)
        assert run.data.tags["tuner.state"] == "COMPLETE"
        assert run.info.status == "FINISHED"
        assert {"lr", "warmup_fraction", "schedule"} <= set(run.data.params)
        assert len(client.get_metric_history(run.info.run_id, "lr")) == logged_points(60)
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == logged_points(60)
        assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 3
        assert run.data.metrics["test_acc"] == pytest.approx(trial.user_attrs["test_acc"])
        assert run.data.metrics["value"] == pytest.approx(trial.value)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"trial_config.yaml", "lr_curve.png"} <= artifacts
    assert out.count(" COMPLETE value=") == 5


def test_population_study_equals_the_same_study_one_trial_at_a_time(tmp_path, run_cli):
    # SGD at 0.01, 0.1 or 20: at 20 it diverges, at a window flush between validations.
    args = (
        *TINY,
        "model=mlp",
        "optimizer=sgd",
        "search=lr",
        "search.params.lr.type=categorical",
        "+search.params.lr.choices=[0.01,0.1,20.0]",
        "sampler=random",
        "study.n_trials=4",
        "pruner=none",
        "tracking.step_flush_every=7",
        "trainer.divergence_factor=3",
    )
    assert run_cli(*args, "study.population=4", "study.name=together")[0] == 0
    assert run_cli(*args, "study.name=alone")[0] == 0
    together, alone = _study(tmp_path, "together").trials, _study(tmp_path, "alone").trials
    stops = [re.match(r"diverged at step (\d+)", t.user_attrs.get("reason", "")) for t in alone]
    assert any(m is not None and int(m.group(1)) % 20 != 0 for m in stops)
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in alone)
    for member, single in zip(together, alone, strict=True):
        assert member.params == single.params
        assert member.state == single.state
        assert member.user_attrs.get("reason") == single.user_attrs.get("reason")
        assert member.user_attrs["steps"] == single.user_attrs["steps"]
        assert sorted(member.intermediate_values) == sorted(single.intermediate_values)
        for step, value in single.intermediate_values.items():
            assert math.isclose(member.intermediate_values[step], value, abs_tol=1e-3) or (
                math.isnan(value) and math.isnan(member.intermediate_values[step])
            )
    for run in _runs(tmp_path, "together"):
        state = run.data.tags["tuner.state"]
        assert state in ("COMPLETE", "PRUNED")
        assert ("diverged" in run.data.tags.get("tuner.reason", "")) == (state == "PRUNED")


def _notes(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("note: study.population")]


def test_a_space_that_changes_shared_keys_runs_one_trial_at_a_time(tmp_path, run_cli):
    code, out, err = run_cli(
        *TINY,
        "model=cnn1d",
        "study.population=4",
        "study.name=shapes",
        "+search.params.kernel={path: model.kernel_size, type: int, low: 3, high: 7, step: 2}",
    )
    assert code == 0, err
    notes = _notes(out)
    assert len(notes) == 1
    assert notes[0].startswith(
        "note: study.population=4 runs one trial at a time: search.params.kernel sets model.kernel_size"
    )
    assert len(_study(tmp_path, "shapes").trials) == 2


def test_a_model_vmap_refuses_runs_one_trial_at_a_time(tmp_path, run_cli, monkeypatch):
    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "stateful.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Counting(nn.Module):
                '''Keeps a running sum of its outputs in a plain tensor, updated in place.'''

                def __init__(self, input_shape, num_classes):
                    super().__init__()
                    self.body = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes))
                    self.total = torch.zeros(())

                def forward(self, x):
                    out = self.body(x)
                    self.total.add_(out.detach().mean())
                    return out
            """
        )
    )
    monkeypatch.syspath_prepend(str(plugin))
    code, out, err = run_cli(
        *TINY, "study.population=2", "study.name=stateful", "model._target_=stateful.Counting"
    )
    assert code == 0, err
    notes = _notes(out)
    assert len(notes) == 1
    assert notes[0].startswith(
        "note: study.population=2 runs one trial at a time: the model cannot be vectorised"
    )
    assert "Traceback" not in out + err
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in _study(tmp_path, "stateful").trials)


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_a_bad_population_is_one_clear_line(tmp_path, run_cli, value):
    code, _out, err = run_cli(*TINY, f"study.population={value}")
    assert code == 2
    assert err.strip().startswith("error: study.population=")
    assert "auto" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "optuna.journal").exists()


def test_auto_takes_the_cores_and_a_quarter_of_the_study(tmp_path, run_cli):
    code, out, err = run_cli(
        *TINY, "model=mlp", "study.population=auto", "study.n_trials=8", "study.name=auto", "pruner=none"
    )
    assert code == 0, err
    assert "note: study.population=auto: 2 trials per population" in out
    assert len(_study(tmp_path, "auto").trials) == 8
