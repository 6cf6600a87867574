"""Which GPUs and threads each local worker gets."""

from __future__ import annotations

import pytest

from tuner.errors import UserError
from tuner.launch.plan import plan_workers


def plan(workers, **kwargs):
    settings = {
        "gpus": [],
        "cores": 2,
        "gpus_per_worker": 1,
        "trials_per_gpu": 1,
        "threads_per_worker": None,
        "max_threads": None,
        **kwargs,
    }
    return plan_workers(workers, **settings)


def test_cpu_workers_share_the_cores():
    plans = plan(2, cores=8)
    assert [p.threads for p in plans] == [4, 4]
    assert all(p.gpus is None and "CUDA_VISIBLE_DEVICES" not in p.env() for p in plans)
    assert plans[0].env()["OMP_NUM_THREADS"] == "4"
    assert [p.threads for p in plan(2, cores=8, max_threads=1)] == [1, 1]
    assert len(plan(None, cores=3)) == 3  # one worker per core by default


def test_trials_per_gpu_packs_workers_on_each_gpu():
    plans = plan(None, gpus=["0", "1"], trials_per_gpu=2)
    assert [p.env()["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0", "0", "1", "1"]


def test_gpus_per_worker_gives_each_worker_its_own_set():
    plans = plan(None, gpus=["2", "3", "5", "7"], gpus_per_worker=2, devices_per_trial=2)
    assert [p.env()["CUDA_VISIBLE_DEVICES"] for p in plans] == ["2,3", "5,7"]


@pytest.mark.parametrize(
    ("workers", "kwargs", "key"),
    [
        (3, {"gpus": ["0"], "trials_per_gpu": 2}, "launcher.workers"),
        (1, {"gpus": ["0"], "gpus_per_worker": 2, "devices_per_trial": 2}, "launcher.gpus_per_worker"),
        # A worker's GPUs and a trial's devices must match: idle GPUs, or trials without theirs.
        (1, {"gpus": ["0", "1"], "gpus_per_worker": 2}, "launcher.gpus_per_worker"),
        (1, {"gpus": ["0", "1"], "devices_per_trial": 2}, "launcher.gpus_per_worker"),
        (1, {"gpus": ["0", "1"], "gpus_per_worker": 2, "trials_per_gpu": 2}, "launcher.trials_per_gpu"),
        (0, {}, "launcher.workers"),
    ],
)
def test_plans_that_cannot_fit_name_their_key(workers, kwargs, key):
    with pytest.raises(UserError) as error:
        plan(workers, **kwargs)
    assert error.value.key == key


def test_explicit_threads_per_worker_wins():
    assert [p.threads for p in plan(2, cores=2, threads_per_worker=3, max_threads=1)] == [3, 3]
