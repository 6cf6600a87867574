"""One trial: reproducible from its seed, guarded against divergence."""

from __future__ import annotations

import math

from tuner.data.factory import build_datamodule
from tuner.training.guards import DivergenceGuard
from tuner.training.trial import run_trial

SHORT = [
    "trainer.max_steps=40",
    "trainer.val_check_interval=20",
    "tracking.step_flush_every=10",
    "data.num_samples=600",
]


class _Sink:
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.lrs: list[float] = []

    def log_steps(self, steps, series):
        self.losses += series["train_loss"]
        self.lrs += series["lr"]

    def log_metrics(self, step, metrics):
        pass


def test_a_trial_is_reproducible_from_its_seed(compose_cfg):
    cfg = compose_cfg(*SHORT, "model=mlp")
    datamodule = build_datamodule(cfg)
    first, second = _Sink(), _Sink()
    a = run_trial(cfg, datamodule, trial=None, run=first)
    b = run_trial(cfg, datamodule, trial=None, run=second)
    assert first.losses == second.losses and len(first.losses) == 40
    assert a.value == b.value and a.state == "COMPLETE"
    other = _Sink()
    run_trial(compose_cfg(*SHORT, "model=mlp", "seed=1"), datamodule, trial=None, run=other)
    assert other.losses != first.losses


def test_schedule_steps_every_optimizer_step(compose_cfg):
    cfg = compose_cfg(
        *SHORT, "model=mlp", "schedule=warmup_linear", "schedule.warmup_steps=10", "optimizer.lr=0.1"
    )
    sink = _Sink()
    run_trial(cfg, build_datamodule(cfg), trial=None, run=sink)
    assert sink.lrs[9] == max(sink.lrs) == 0.1  # peak at the end of the warmup
    assert all(a > b for a, b in zip(sink.lrs[10:], sink.lrs[11:], strict=False))  # linear decay


def test_guard_flags_nan_and_explosions():
    guard = DivergenceGuard(factor=4.0, initial_steps=2)
    assert guard.check([2.3, 2.3, 2.0]) is None
    assert guard.check([5.0, 6.0]) is None  # below 4x of 2.3
    assert "exploded" in (guard.check([10.0, 12.0]) or "")
    assert "non-finite" in (DivergenceGuard().check([1.0, math.nan]) or "")


def test_direct_step_trains_as_lightnings_own_path(compose_cfg, monkeypatch):
    """The single-process shortcut past the strategy changes nothing a trial computes."""
    from tuner.training.module import TrialModule

    cfg = compose_cfg(*SHORT, "model=mlp", "trainer.gradient_clip_val=0.5", "trainer.steps_per_call=4")
    datamodule = build_datamodule(cfg)
    direct, through = _Sink(), _Sink()
    a = run_trial(cfg, datamodule, trial=None, run=direct)
    original = TrialModule.on_fit_start

    def lightning_path(self):
        original(self)
        assert self._direct  # the shortcut was on for the first run
        self._direct = False

    monkeypatch.setattr(TrialModule, "on_fit_start", lightning_path)
    b = run_trial(cfg, datamodule, trial=None, run=through)
    assert direct.losses == through.losses and len(direct.losses) == 40
    assert a.steps == b.steps == 40 and a.value == b.value


def test_steps_per_call_divides_the_validation_interval(compose_cfg):
    from tuner.training.trial import steps_per_call

    assert steps_per_call(compose_cfg("trainer.val_check_interval=250")) == 10
    assert steps_per_call(compose_cfg("trainer.val_check_interval=250", "trainer.steps_per_call=8")) == 5
    assert steps_per_call(compose_cfg("trainer.val_check_interval=7", "trainer.steps_per_call=8")) == 7
    assert steps_per_call(compose_cfg("trainer.val_check_interval=13", "trainer.steps_per_call=8")) == 1
