"""Search presets: families drawn by the sampler, their conditional parameters, the checks."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest

from tuner.cli import config_dir
from tuner.errors import UserError
from tuner.search.space import ParamSpec, apply, suggest
from tuner.tracking.tracker import local_uri
from tuner.validate import check_trial, validate

PRESETS = sorted(
    p.stem for p in (Path(config_dir()) / "search").glob("*.yaml") if not p.stem.startswith("_")
)  # _settings.yaml: what the presets share


def test_the_presets_the_issue_names_exist():
    assert {"lr", "lr_warmup", "lr_decay", "schedule_family", "optimizer_family", "full"} <= set(PRESETS)


@pytest.mark.parametrize(
    "base", [[], ["optimizer=sgd", "schedule=warmup_linear"], ["optimizer=prodigy", "schedule=wsd"]]
)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_validates_on_other_bases(compose_cfg, preset, base):
    assert validate(compose_cfg(f"search={preset}", *base))


def test_a_drawn_optimizer_gets_its_own_keys_and_keeps_the_shared_ones(compose_cfg):
    cfg = compose_cfg("search=optimizer_family", "optimizer=adam", "optimizer.weight_decay=0.001")
    specs = validate(cfg)
    trial = apply(cfg, specs, {"optimizer": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True})
    check_trial(trial)
    assert dict(trial.optimizer) == {
        "name": "sgd",
        "lr": 0.1,
        "weight_decay": 0.001,  # the configured one holds whatever family is drawn
        "decay_norm_and_bias": False,
        "momentum": 0.8,
        "nesterov": True,
        "dampening": 0.0,  # from conf/optimizer/sgd.yaml; adam's betas, eps, amsgrad are gone
    }
    # Not sampled: the family's own option file, not adam's values (eps 1e-6, not 1e-8).
    adadelta = apply(cfg, specs, {"optimizer": "adadelta", "lr": 1.0})
    assert (adadelta.optimizer.rho, adadelta.optimizer.eps) == (0.9, 1.0e-6)
    assert "betas" not in adadelta.optimizer
    # The configured family is left as configured.
    same = apply(cfg, specs, {"optimizer": "adam", "lr": 0.01, "beta1": 0.85, "beta2": 0.99})
    assert dict(same.optimizer) == {**dict(cfg.optimizer), "lr": 0.01, "betas": [0.85, 0.99]}


def test_a_condition_on_the_config_key_follows_the_drawn_family(compose_cfg):
    cfg = compose_cfg("search=optimizer_family", "optimizer=adam")
    cfg.search.params.momentum.when = {"optimizer.name": "sgd"}  # a config key, not the parameter
    specs = validate(cfg)
    sgd = suggest(
        optuna.trial.FixedTrial({"optimizer": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": False}),
        specs,
        cfg,
    )
    assert sgd["momentum"] == 0.8
    adam = suggest(
        optuna.trial.FixedTrial({"optimizer": "adam", "lr": 0.1, "beta1": 0.9, "beta2": 0.99}), specs, cfg
    )
    assert "momentum" not in adam


def test_a_drawn_schedule_keeps_the_configured_warmup_and_floor(compose_cfg):
    cfg = compose_cfg("search=schedule_family", "schedule=warmup_cosine", "schedule.min_lr_ratio=0.05")
    specs = validate(cfg)
    trial = apply(cfg, specs, {"schedule": "step", "lr": 0.01, "gamma": 0.3, "step_fraction": 0.2})
    check_trial(trial)
    assert dict(trial.schedule) == {
        "name": "step",
        "warmup": "linear",
        "warmup_fraction": 0.05,
        "warmup_steps": None,
        "warmup_start_ratio": 0.01,
        "min_lr_ratio": 0.05,
        "step_fraction": 0.2,
        "gamma": 0.3,
    }
    wsd = apply(cfg, specs, {"schedule": "wsd", "lr": 0.01})  # no sampled values: wsd.yaml's
    assert (wsd.schedule.decay_fraction, wsd.schedule.cooldown) == (0.2, "1-sqrt")


@pytest.mark.parametrize(
    ("overrides", "key", "fix"),
    [
        # A key of another family, not conditioned on the family that has it.
        (
            ["search=lr", "+search.params.momentum={path:optimizer.momentum,low:0.5,high:0.9}"],
            "search.params.momentum.when",
            "not a key of adam",
        ),
        (
            ["search=optimizer_family", "search.params.rho.when={optimizer:[adadelta,adam]}"],
            "search.params.rho.when",
            "when: {optimizer: [adadelta]}",
        ),
        # A bound no trial could use.
        (
            ["search=schedule_family", "search.params.gamma.high=1.5"],
            "search.params.gamma.high",
            "schedule.gamma=1.5",
        ),
        # A family that cannot work with the configured warmup (inverse_sqrt needs one).
        (
            ["search=schedule_family", "schedule=constant"],
            "search.params.schedule.choices",
            "schedule.warmup='none'",
        ),
        (["search=lr_warmup", "schedule=inverse_sqrt"], "search.params.warmup.choices", "inverse_sqrt"),
        (
            ["search=optimizer_family", "search.params.optimizer.choices=[sgd,adamm]"],
            "search.params.optimizer.choices",
            "use one of",
        ),
        (
            ["search=lr", "+search.params.m={path:optimizer.momentumm,low:0.5,high:0.9}"],
            "search.params.m.path",
            "existing config key",
        ),
    ],
)
def test_a_space_that_would_make_bad_trials_is_refused_up_front(compose_cfg, overrides, key, fix):
    with pytest.raises(UserError) as info:
        validate(compose_cfg(*overrides))
    assert info.value.key == key
    assert fix in str(info.value)


def _active_names(specs: list[ParamSpec], params: dict) -> set[str]:
    """The parameters a trial with these values must have: those whose `when` holds."""
    return {s.name for s in specs if all(params.get(p) in allowed for p, allowed in s.when.items())}


@pytest.mark.slow
def test_schedule_family_study_reports_each_family_and_keeps_conditionals_apart(
    tmp_path, run_cli, compose_cfg
):
    overrides = [
        "data=digits",
        "model=mlp",
        "model.hidden=[32]",
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        "tracking.step_flush_every=20",
        "search=schedule_family",
        "sampler=random",
        "pruner=none",
        "study.n_trials=10",
    ]
    code, out, err = run_cli(*overrides, "study.name=families")
    assert code == 0, out + err
    specs = validate(compose_cfg(*overrides))
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs" / "optuna.journal"))
    )
    study = optuna.load_study(study_name="families", storage=storage)
    families = {t.params["schedule"] for t in study.trials}
    assert len(families) >= 4  # random sampling over 12 families
    for trial in study.trials:
        assert set(trial.params) == _active_names(specs, trial.params), trial.params

    # MLflow: each trial run has exactly its trial's parameters; the parent the best per family.
    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    runs = mlflow.search_runs(experiment_names=["families"], output_format="list")
    by_number = {int(r.data.tags["tuner.trial"]): r for r in runs if r.data.tags.get("tuner.role") == "trial"}
    assert sorted(by_number) == [t.number for t in study.trials]
    for trial in study.trials:
        assert set(by_number[trial.number].data.params) == set(trial.params)
    (parent,) = [r for r in runs if r.data.tags.get("tuner.role") == "study"]

    assert "best val_acc per schedule" in out
    table = out[out.index("best val_acc per schedule") :]
    for family in families:
        complete = [t.value for t in study.trials if t.params["schedule"] == family and t.value is not None]
        best = max(complete)
        assert parent.data.metrics[f"best_by.schedule.{family}"] == pytest.approx(best)
        row = next(line for line in table.splitlines() if f" {family} " in line)
        assert f"{best:.4g}" in row
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert "best_per_choice.md" in artifacts
