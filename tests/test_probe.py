"""Cooldown probes: a branch leaves the trial exactly as it was; the pruner sees the branch."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from tests.conftest import TINY
from tuner.config.nodes import plain
from tuner.data.factory import build_datamodule
from tuner.errors import UserError
from tuner.models.factory import build_model
from tuner.optimizer.factory import build_optimizer
from tuner.schedule.functions import build_scheduler
from tuner.training.module import evaluate
from tuner.training.plateau import NoiseRule, PlateauRule
from tuner.training.probe import PROBES_ATTR, CooldownProbe, ProbeSettings
from tuner.training.trial import make_probe, run_trial
from tuner.validate import validate

SHORT = [
    "trainer.max_steps=80",
    "trainer.val_check_interval=10",
    "tracking.step_flush_every=10",
    "data.num_samples=600",
    "model=mlp",
]


def _state(net, optimizer, scheduler):
    return {
        "net": {k: v.clone() for k, v in net.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "scheduler": scheduler.state_dict(),
        "lr": [g["lr"] for g in optimizer.param_groups],
        "torch": torch.get_rng_state().clone(),
        "python": random.getstate(),
        "numpy": np.random.get_state()[1].copy(),
        "training": net.training,
    }


def _same(a, b):
    assert a["net"].keys() == b["net"].keys()
    for key in a["net"]:
        assert torch.equal(a["net"][key], b["net"][key]), key
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for index in sa:
        for name, value in sa[index].items():
            other = sb[index][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["scheduler"] == b["scheduler"] and a["lr"] == b["lr"]
    assert torch.equal(a["torch"], b["torch"]) and a["python"] == b["python"]
    assert np.array_equal(a["numpy"], b["numpy"]) and a["training"] == b["training"]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_branch_leaves_the_state_exactly_as_before(compose_cfg, optimizer):
    cfg = compose_cfg(
        *SHORT, f"optimizer={optimizer}", "optimizer.lr=0.05", "schedule=cosine", "probe=cooldown"
    )
    datamodule = build_datamodule(cfg)
    net = build_model(cfg, datamodule)
    opt = build_optimizer(net, plain(cfg.optimizer))
    scheduler = build_scheduler(opt, plain(cfg.schedule), 80)
    for x, y in list(datamodule.train_dataloader())[:3]:  # some optimizer state and schedule position
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        opt.zero_grad()
        scheduler.step()
    before = _state(net, opt, scheduler)
    probe = make_probe(cfg, datamodule, warmup_steps=0)
    assert probe is not None
    result = probe.run(net, opt, scheduler, lambda: evaluate(net, datamodule.val_dataloader()), step=30)
    _same(before, _state(net, opt, scheduler))
    assert result.length == 10 and result.run_length == 40  # max(min_steps, 0.2 * 30)
    # the branch trained: its loss moved (the accuracy of a tiny split may not)
    assert result.metrics["val_loss"] != evaluate(net, datamodule.val_dataloader())["val_loss"]


def test_a_trial_with_probes_trains_exactly_as_without(compose_cfg):
    # The branches must not leak into the trial: same losses, same final value.
    base = [*SHORT, "optimizer.lr=0.02", "schedule=wsd"]
    plain_cfg, probed_cfg = compose_cfg(*base), compose_cfg(*base, "probe=cooldown")
    a = run_trial(plain_cfg, build_datamodule(plain_cfg), trial=None, run=None)
    b = run_trial(probed_cfg, build_datamodule(probed_cfg), trial=None, run=None)
    assert a.value == b.value and a.metrics == b.metrics


def test_rungs_grow_and_skip_the_warmup():
    probe = CooldownProbe(
        ProbeSettings(growth=2.0),
        floor_ratio=0.0,
        total_steps=3000,
        train_batches=list,
        every=250,
        warmup_steps=300,
    )
    assert probe.rungs() == [250, 500, 1000, 2000]
    assert not probe.due(250) and probe.due(500) and not probe.due(750) and not probe.due(3000)
    every = CooldownProbe(
        ProbeSettings(growth=1.0), floor_ratio=0.0, total_steps=100, train_batches=list, every=25
    )
    assert every.rungs() == [25, 50, 75]


def test_plateau_rule_spares_a_flat_metric_while_the_loss_falls():
    rule = PlateauRule(until=1000)
    assert rule.spares(500, [0.11, 0.11], [2.0, 1.5])  # flat, loss falling: kept
    assert rule.spares(500, [0.47, 0.41], [2.0, 1.5])  # a dip below the plateau: kept
    assert rule.spares(200, [0.41], [3.1, 2.0])  # first evaluation: the loss fell from its start
    assert not rule.spares(200, [0.41], [3.1, 3.1])  # ... or did not
    # Accuracy flat below the plateau, training loss creeping up, validation loss falling:
    # modular addition with strong weight decay some hundred steps before it generalises.
    assert rule.spares(800, [0.426, 0.418], [0.05, 0.063], [4.98, 3.90])
    assert not rule.spares(800, [0.426, 0.418], [0.05, 0.063], [4.98, 5.10])  # neither falls
    minimizing = PlateauRule(until=1000, maximize=False)
    assert minimizing.spares(500, [0.9, 1.2], [2.0, 1.5])  # val_loss rising while train loss falls
    assert not minimizing.spares(500, [1.2, 0.9], [2.0, 1.5])  # val_loss improving: the pruner decides
    assert not rule.spares(500, [0.11, 0.11], [1.5, 1.5])  # flat, loss flat: pruned
    assert not rule.spares(500, [0.11, 0.30], [2.0, 1.5])  # not flat: the pruner decides
    assert not rule.spares(1000, [0.11, 0.11], [2.0, 1.5])  # the share is spent


def _tied_study(values_at_200):
    """A real in-memory study whose complete trials reported these values at step 200."""
    import optuna

    study = optuna.create_study(direction="maximize")
    for value in values_at_200:
        study.add_trial(
            optuna.trial.create_trial(value=value, intermediate_values={200: value, 400: value})
        )
    return study


def test_noise_rule_spares_a_trial_within_a_standard_error_of_the_median():
    # Modular addition: 122 validation examples, the plateau at 0.467 (57 of 122), one
    # standard error sqrt(0.467 * 0.533 / 122) = 0.045.
    study = _tied_study([0.467, 0.467, 0.467, 0.475])
    trial = study.ask()
    rule = NoiseRule(samples=122)
    assert rule.margin(0.467) == pytest.approx(0.0452, abs=1e-4)
    assert rule.spares(trial, 200, 0.459)  # one example below the plateau: no evidence
    assert rule.spares(trial, 200, 0.426)  # five below, still within 0.045
    assert not rule.spares(trial, 200, 0.40)  # past one standard error: the pruner decides
    assert not NoiseRule(samples=10_000).spares(trial, 200, 0.459)  # a large set resolves it
    assert not rule.spares(trial, 300, 0.459)  # no complete trial reported at that step
    assert NoiseRule(samples=122, maximize=False).spares(trial, 200, 0.50)  # direction


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("probe.fraction=0", "probe.fraction"),
        ("probe.growth=0.5", "probe.growth"),
        ("probe.shape=square", "probe.shape"),
        ("probe.min_steps=0", "probe.min_steps"),
        ("study.population=2", "probe.name"),
        ("pruner.plateau_share=2", "pruner.plateau_share"),
        ("pruner.noise_margin=-1", "pruner.noise_margin"),
    ],
)
def test_bad_probe_settings_name_the_key(compose_cfg, override, key):
    with pytest.raises(UserError) as err:
        validate(compose_cfg("probe=cooldown", override))
    assert err.value.key == key


def test_a_study_with_probes_reports_best_lr_by_training_length(run_cli, tmp_path):
    import optuna

    name = "probed"
    code, _, err = run_cli(
        *TINY, "probe=cooldown", "probe.growth=1", "study.n_trials=3", "pruner=none", f"study.name={name}"
    )
    assert code == 0, err
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs" / "optuna.journal"))
    study = optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(journal))
    probes = [t.user_attrs[PROBES_ATTR] for t in study.trials]
    assert all(len(p) >= 1 for p in probes)
    report = (tmp_path / "runs" / "studies" / name / "report.md").read_text()
    assert "Best learning rate by training length" in report
