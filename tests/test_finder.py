"""The LR range test: state restored, rules on known curves, cycling, divergence, CLI, from_finder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import torch
from lightning_fabric import Fabric

from tests.conftest import REPO, TINY, run_subprocess
from tuner.finder.rangetest import cycle, ema, ramp, range_test
from tuner.finder.rules import min_over_10, read_curve, spread, steepest, trimmed_log_mean, valley
from tuner.models import MLP
from tuner.study.narrow import FINDER_ATTR, narrow_bounds
from tuner.tracking.tracker import local_uri

FIND = ["mode=find", "data.num_samples=600", "finder.num_steps=60", "finder.seeds=[0,1]"]


@pytest.fixture(scope="module")
def fabric() -> Fabric:
    fabric = Fabric(accelerator="cpu", devices=1)
    fabric.launch()
    return fabric


def _data(n: int = 96, *, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    y = (x[:, 0] > 0).long()
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, n, 32)]


def _state(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    return (
        {k: v.clone() for k, v in net.state_dict().items()},
        json.loads(json.dumps(optimizer.state_dict(), default=lambda t: t.tolist())),
    )


def test_weights_and_optimizer_state_are_restored(fabric: Fabric) -> None:
    torch.manual_seed(0)
    net = MLP((8,), 2, hidden=[16])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for x, y in _data():  # a few real steps first, so Adam's moments are not empty
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    net.eval()
    weights, opt_state = _state(net, optimizer)
    assert opt_state["state"], "the optimizer should carry state before the test"
    curve = range_test(
        net, optimizer, cycle(_data()), lrs=ramp(1e-5, 1.0, 25), beta=0.9, diverge_factor=4, fabric=fabric
    )
    assert len(curve.lrs) > 5
    after_weights, after_opt = _state(net, optimizer)
    assert weights.keys() == after_weights.keys()
    for key, value in weights.items():
        assert torch.equal(value, after_weights[key]), key
    assert after_opt == opt_state  # moments, step counts and the LR of every group
    assert not net.training  # the mode it was in


def test_cycles_past_an_epoch(fabric: Fabric) -> None:
    batches = _data(96)  # three batches an epoch
    net = MLP((8,), 2, hidden=[16])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    curve = range_test(
        net, optimizer, cycle(batches), lrs=ramp(1e-4, 1e-2, 20), beta=0.9, diverge_factor=100, fabric=fabric
    )
    assert len(curve.losses) == 20 and curve.stopped is None
    # Under DDP every rank takes its own share of each pass (an epoch), pass after pass.
    sums = [int(b[1].sum()) for b in batches]
    shares = [
        [int(b[1].sum()) for b, _ in zip(cycle(batches, rank=rank, world_size=2), range(4), strict=False)]
        for rank in (0, 1)
    ]
    assert shares == [[sums[0], sums[2], sums[0], sums[2]], [sums[1]] * 4]


def test_an_empty_loader_is_a_user_error() -> None:
    from tuner.errors import UserError

    with pytest.raises(UserError, match=r"data\.batch_size"):
        next(cycle([], rank=0, world_size=1))


def test_divergence_stops_the_test_early(fabric: Fabric) -> None:
    torch.manual_seed(0)
    net = MLP((8,), 2, hidden=[16])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    curve = range_test(
        net, optimizer, cycle(_data()), lrs=ramp(1e-3, 1e4, 100), beta=0.8, diverge_factor=4, fabric=fabric
    )
    assert curve.stopped is not None
    assert 5 < len(curve.lrs) < 100
    assert curve.lrs[-1] > 1.0  # it got well past the useful range before stopping
    assert "diverged" in curve.stopped or "loss" in curve.stopped


def test_ramps_and_bias_corrected_average() -> None:
    exp = ramp(1e-6, 1.0, 7)
    assert np.allclose(np.log10(exp), np.arange(-6, 1))
    assert np.allclose(ramp(0.1, 1.0, 10, mode="linear"), np.linspace(0.1, 1.0, 10))
    # Bias correction: a constant series averages to itself from the first step on.
    assert np.allclose(ema(np.full(5, 2.0), 0.98), 2.0)


def _synthetic(x: np.ndarray) -> np.ndarray:
    """A plateau, a logistic descent centred at 1e-3, a minimum near 1e-1, a blow-up after."""
    return 2.3 - 1.5 / (1 + np.exp(-(x + 3) / 0.25)) + 2.0 * np.clip(x + 1, 0, None) ** 2


def test_rules_on_a_known_curve() -> None:
    x = np.linspace(-6, 0.5, 400)
    y = _synthetic(x)
    bottom = x[np.argmin(y)]
    assert math.log10(steepest(x, y)) == pytest.approx(-3, abs=0.02)
    assert math.log10(min_over_10(x, y)) == pytest.approx(bottom - 1, abs=0.02)
    # The descent begins where 10% of the drop is done: the logistic's 10% point.
    onset = -3 - 0.25 * math.log(9)
    assert math.log10(valley(x, y)) == pytest.approx((onset + bottom) / 2, abs=0.05)


def test_rules_survive_noise_and_an_early_spike() -> None:
    x = np.linspace(-6, 0.5, 400)
    rng = np.random.default_rng(0)
    y = _synthetic(x) + rng.normal(0, 0.1, len(x))
    y[80] += 5.0  # one bad batch at 1e-4.7
    y[81] += 3.0
    marks = read_curve(10**x, y, window=0.2)
    clean = read_curve(10**x, _synthetic(x), window=0.2)
    assert math.log10(marks.rules["steepest"]) == pytest.approx(-3, abs=0.15)
    assert math.log10(marks.combined / clean.combined) == pytest.approx(0, abs=0.15)
    assert read_curve(10**x, y, window=0.2, scale=3.0).combined == pytest.approx(3 * marks.combined)


def test_a_wild_rule_is_left_out_of_the_mean() -> None:
    assert trimmed_log_mean([1e-3, 4e-3, 2e-3]) == pytest.approx(2e-3)
    assert trimmed_log_mean([1e-3, 4e-3, 1e-7]) == pytest.approx(2e-3)  # 1e-7: 4 decades off
    assert spread([1e-3, 4e-3, 2e-3]) == pytest.approx(4.0)


def test_narrow_bounds() -> None:
    assert narrow_bounds(1e-5, 1.0, 1e-3, 3.0) == pytest.approx((1e-3 / 3, 3e-3))
    assert narrow_bounds(1e-5, 1.0, 0.9, 3.0) == pytest.approx((1 / 9, 1.0))  # slid inside
    assert narrow_bounds(1e-3, 2e-3, 1e-2, 3.0) == (1e-3, 2e-3)  # already narrower


def _runs(tmp_path: Path, experiment: str) -> list:
    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


@pytest.mark.slow
def test_mode_find_prints_a_suggestion_and_writes_the_plot(tmp_path: Path, run_cli) -> None:
    code, out, err = run_cli(*FIND, "study.name=find")
    assert code == 0, err
    assert "<- suggested lr" in out
    for rule in ("steepest", "valley", "min/10", "combined"):
        assert rule in out
    png = tmp_path / "runs" / "studies" / "find" / "finder.png"
    assert f"plot: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [run] = _runs(tmp_path, "find")
    assert run.data.tags["tuner.role"] == "finder"
    assert 0 < run.data.metrics["suggested_lr"] < 10
    assert run.data.metrics["spread"] >= 1
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"finder.png", "finder.json"} <= artifacts


def test_bad_finder_setting_is_one_line(run_cli) -> None:
    code, _, err = run_cli(*FIND, "finder.end_lr=1e-9")
    assert code == 2
    assert err.strip().startswith("error: finder.end_lr=1e-09:")
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(*TINY, "search.from_finder=true", "search.finder_param=warmup_fraction")
    assert code == 2 and "search.finder_param='warmup_fraction'" in err
    code, _, err = run_cli(*TINY, "search=optimizer_family", "search.from_finder=true")
    assert code == 2 and err.startswith("error: search.from_finder=True: the range test runs")


@pytest.mark.slow
def test_from_finder_narrows_the_lr_and_records_it(tmp_path: Path, run_cli) -> None:
    args = [
        *TINY,
        "search=lr",
        "search.from_finder=true",
        "search.finder_factor=2",
        "finder.num_steps=50",
        "finder.seeds=[0]",
        "study.name=narrow",
        "pruner=none",
    ]
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "LR range test" in out and "search.params.lr in [" in out
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs" / "optuna.journal"))
    )
    study = optuna.load_study(study_name="narrow", storage=storage)
    record = study.user_attrs[FINDER_ATTR]
    low, high = record["low"], record["high"]
    divergence = record["result"]["divergence"]
    if divergence is None:
        assert high / low == pytest.approx(4.0)
    else:  # the bracket's top is the divergence point (inside the configured 1e-5..1)
        assert (low, high) == pytest.approx((record["result"]["suggestion"] / 2, min(divergence, 1.0)))
    assert low <= record["result"]["suggestion"] <= high
    assert all(low <= t.params["lr"] <= high for t in study.trials)
    runs = _runs(tmp_path, "narrow")
    [parent] = [r for r in runs if r.data.tags.get("tuner.role") == "study"]
    assert float(parent.data.params["finder.lr.low"]) == pytest.approx(low)
    assert float(parent.data.params["finder.lr.high"]) == pytest.approx(high)
    assert float(parent.data.params["finder.suggested_lr"]) == pytest.approx(record["result"]["suggestion"])
    [finder_run] = [r for r in runs if r.data.tags.get("tuner.role") == "finder"]
    assert finder_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    # The same command again: the same study, the stored answer, no second range test.
    code, out, err = run_cli(*[a.replace("study.n_trials=2", "study.n_trials=3") for a in args])
    assert code == 0, err
    assert "reusing the range test" in out and "LR range test:" not in out
    study = optuna.load_study(study_name="narrow", storage=storage)
    assert len(study.trials) == 3
    assert all(low <= t.params["lr"] <= high for t in study.trials)
    assert len([r for r in _runs(tmp_path, "narrow") if r.data.tags.get("tuner.role") == "finder"]) == 1


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_agrees(tmp_path: Path) -> None:
    result = run_subprocess(
        *FIND,
        "finder.seeds=[0]",
        "study.name=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "TUNER_HOME": str(tmp_path / "runs")},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ddp: rank" not in result.stderr  # the other rank ended cleanly
    assert "(cpu, 2 process(es))" in result.stdout
    assert result.stdout.count("<- suggested lr") == 1  # rank 0 alone reports
    assert (tmp_path / "runs" / "studies" / "ddp" / "finder.png").exists()
