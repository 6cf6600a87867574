"""One trial on two CPU processes (DDP over gloo): pruning and the divergence guard reach every rank."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from tuner.study.optuna_study import count_finished

pytestmark = pytest.mark.slow


def test_ddp_on_two_cpu_processes_prunes_a_bad_trial_and_stops_a_diverging_one(tmp_path, run_cli):
    (tmp_path / "runs").mkdir()
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))
    study = optuna.create_study(study_name="ddp", storage=storage, direction="maximize")
    # A good LR first (the pruner's reference), then one too small to learn, then one that explodes.
    for lr in (0.1, 1e-6, 10.0):
        study.enqueue_trial({"lr": lr})
    code, out, err = run_cli(
        "study.name=ddp",
        "study.n_trials=3",
        "data.num_samples=800",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=100",
        "trainer.val_check_interval=20",
        "trainer.divergence_factor=3",
        "tracking.step_flush_every=20",
        "optimizer=sgd",
        "schedule=constant",
        "search=lr",
        "search.params.lr.low=1e-7",
        "search.params.lr.high=20",
        "pruner=median",
        "pruner.n_startup_trials=1",
    )
    assert code == 0, out + err
    study = optuna.load_study(study_name="ddp", storage=storage)
    good, slow, exploding = study.trials
    assert count_finished(study) == 3
    assert all(t.user_attrs["world_size"] == 2 for t in study.trials)
    assert good.state == TrialState.COMPLETE and good.params["lr"] == 0.1
    assert slow.state == TrialState.PRUNED
    assert "by the pruner" in slow.user_attrs["reason"]
    assert slow.user_attrs["steps"] < 100  # both ranks stopped early, together
    assert exploding.state == TrialState.PRUNED
    assert "diverged" in exploding.user_attrs["reason"]
    assert exploding.user_attrs["steps"] < 100


def test_each_rank_trains_on_its_own_share_of_every_batch():
    import torch

    from tuner.data._arrays import BatchLoader

    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    whole = [b[1].tolist() for b in BatchLoader(x, y, batch_size=4, shuffle=True, seed=3)]
    shares = [
        [b[1].tolist() for b in BatchLoader(x, y, batch_size=4, shuffle=True, seed=3, shard=(rank, 2))]
        for rank in (0, 1)
    ]
    assert len(shares[0]) == len(shares[1]) == len(whole)
    for batch, first, second in zip(whole, *shares, strict=True):
        assert sorted(first + second) == sorted(batch) and not set(first) & set(second)


def test_a_study_from_the_finder_runs_its_range_test_on_both_ranks_once(tmp_path, run_cli):
    # Fabric's own launcher would re-run this whole command as rank 1: a second study.
    code, out, err = run_cli(
        "study.name=ddp-finder",
        "study.n_trials=2",
        "data.num_samples=600",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        "search.from_finder=true",
        "finder.num_steps=40",
        "finder.seeds=[0]",
    )
    assert code == 0, out + err
    assert out.count("LR range test:") == 1 and "(cpu, 2 process(es))" in out
    assert "ddp: rank" not in err  # every other rank ended cleanly
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))
    study = optuna.load_study(study_name="ddp-finder", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    low, high = study.user_attrs["tuner.finder"]["low"], study.user_attrs["tuner.finder"]["high"]
    assert all(low <= t.params["lr"] <= high for t in study.trials)


def test_a_rank_that_cannot_start_stops_the_study_at_once_with_one_message(tmp_path, run_cli, monkeypatch):
    # Rank 1 fails to build the model, before it joins the process group: rank 0 would
    # otherwise wait the whole trainer.ddp_timeout at the rendezvous.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    started = time.monotonic()
    code, out, err = run_cli(
        "study.name=ddp-broken",
        "study.n_trials=2",
        "data.num_samples=400",
        "model._target_=tests.scripted_model.RankZeroOnly",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.ddp_timeout=600",
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
    )
    assert code == 2, out + err
    assert time.monotonic() - started < 300  # not the ddp_timeout
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "trainer.devices" in error[0] and "rank 1 of 2 ended" in error[0]
    # Nothing half-made: the fruitless study and its runs are gone.
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))
    assert "ddp-broken" not in [s.study_name for s in optuna.get_all_study_summaries(storage)]


def test_devices_auto_is_one_device_a_trial_and_ddp_needs_a_count():
    from tuner.cli import compose
    from tuner.devices import trial_devices
    from tuner.errors import UserError
    from tuner.training.ddp import check

    # Lightning's auto would take every GPU for one trial and re-run the command per GPU.
    assert trial_devices(compose([])) == 1
    assert trial_devices(compose(["trainer.devices=auto"])) == 1
    assert trial_devices(compose(["trainer.devices=2"])) == 2
    assert trial_devices(compose(["trainer.devices=[0,1]"])) == [0, 1]
    for overrides in (["trainer.strategy=ddp"], ["trainer.strategy=ddp", "trainer.devices=auto"]):
        with pytest.raises(UserError) as raised:
            check(compose(overrides))
        assert raised.value.key == "trainer.devices"
