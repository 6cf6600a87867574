"""The benchmark tasks and the search space every peer of the suite shares.

Three tasks are the finder benchmark's, taken from its ``_tasks.TASKS`` so that both speak
of the same tasks: ``mnist1d-cnn-adam``, ``mnist1d-mlp-sgd`` and ``digits-mlp-sgd`` (SGD:
with AdamW, digits is within a point of its best over two decades of LR, too flat to tell
searches apart). The suite adds
its own trial length, schedule base and a fixed data split (``data.seed=0``): the seed of
a run then changes the model's initialisation and the sampler, never the validation set
the oracle was measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

from _tasks import TASKS as FINDER_TASKS

#: name -> the overrides that make the task (different data, models and optimizers).
TASKS: dict[str, list[str]] = {
    name: FINDER_TASKS[name] for name in ("mnist1d-cnn-adam", "mnist1d-mlp-sgd", "digits-mlp-sgd")
}


@dataclass(frozen=True)
class Space:
    """The search space: a log-uniform peak LR and a schedule family (no warmup)."""

    low: float = 1e-4
    high: float = 1.0
    schedules: tuple[str, ...] = ("constant", "linear", "cosine")

    def overrides(self) -> list[str]:
        """The project's ``search.params`` for this space (the default space without warmup)."""
        return [
            "search=default",
            "search.params.warmup_fraction=null",
            f"search.params.lr.low={self.low}",
            f"search.params.lr.high={self.high}",
            f"search.params.schedule.choices=[{','.join(self.schedules)}]",
        ]


def task_overrides(task: str, *, steps: int, val_every: int) -> list[str]:
    """Everything that fixes a task's trial: data, model, optimizer, length, evaluation, threads.

    The base schedule is ``cosine`` without warmup; a trial's schedule family is then set by
    ``schedule.name`` (the search space's ``schedule`` parameter, or the oracle's axis).
    """
    return [
        *TASKS[task],
        "schedule=cosine",
        "data.seed=0",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={val_every}",
        "trainer.num_threads=1",
        f"tracking.step_flush_every={val_every}",
    ]


def oracle_name(task: str, steps: int) -> str:
    """File stem of a task's suite oracle: the trial length is part of what it measured."""
    return f"suite-{task}-{steps}"
