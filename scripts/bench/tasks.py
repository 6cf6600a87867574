"""The benchmark tasks: each a model, data, trial length, search space and oracle grid.

Three tasks, chosen so that the way a search is judged matters:

* ``mnist1d-cnn-5p``: the 5-parameter space of issue 13 (peak LR, optimizer, schedule
  family, warmup fraction, weight decay) on the small 1-D CNN.
* ``mnist1d-mlp-sgd``: plain SGD (no momentum), constant LR, on the MNIST-1D MLP: the best LR
  sits just below the one that diverges, so a search must go close to the cliff.
* ``modadd-transformer``: one transformer block on (a + b) mod 23 with AdamW and strong
  weight decay: validation accuracy sits at 0.47 for hundreds of steps (up to 1,300 at LR
  0.003), then jumps (delayed generalisation; ``results/modadd-grokking-curves.txt``); a
  pruner that compares trials early keeps the ones that stay on the plateau.

Every task fixes its data split (``data.seed=0``): the seed of a run changes the model's
initialisation and the sampler, never the validation set the oracle was measured on.

The **target** of a task is the validation accuracy that about ``hit_share`` of the oracle
grid's cells reach (a cell: the seed-mean of one grid point), capped at one point below the
grid's best. The grid spans the LR on a log scale and every categorical choice evenly, as a
random draw does, so ``hit_share`` estimates the chance that one random trial hits the
target: at 0.12 random search needs about 8 trials on the median seed and reaches it
within 10 trials with probability 0.72, while TPE, whose first 10 trials are random
start-up draws, needs more than 4 full trials on the median seed. A target the first
trials hit by luck measures nothing; a target a grid cell barely reaches, nothing either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tuner.report.reproduce import hydra_value


@dataclass(frozen=True)
class Space:
    """A search space: ``search.params`` entries (name -> spec), the project's own syntax."""

    params: dict[str, dict[str, Any]]

    def overrides(self) -> list[str]:
        """The project's ``search.params`` for this space, on top of the one-parameter preset."""
        out = ["search=lr"]
        for name, spec in self.params.items():
            prefix = "" if name == "lr" else "+"  # search=lr has only lr
            out.append(f"{prefix}search.params.{name}={hydra_value(spec)}")
        return out

    @property
    def lr(self) -> dict[str, Any]:
        return self.params["lr"]


def _lr(low: float, high: float) -> dict[str, Any]:
    return {"path": "optimizer.lr", "type": "float", "low": low, "high": high, "log": True}


@dataclass(frozen=True)
class Task:
    """One task: what trains, how long, what is searched, and the grid its oracle comes from.

    ``grid`` maps a config path to the values the oracle trains (crossed); ``hit_share``
    fixes the target (module docstring).
    """

    name: str
    overrides: tuple[str, ...]
    space: Space
    steps: int
    val_every: int
    grid: dict[str, list[Any]]
    grid_seeds: tuple[int, ...] = (0,)
    hit_share: float = 0.12
    what: str = ""


def _decades(low: float, high: float, per_decade: int) -> list[float]:
    """Log-spaced values from ``low`` to ``high`` inclusive, ``per_decade`` a decade."""
    n = round(math.log10(high / low) * per_decade)
    return [float(f"{low * (high / low) ** (i / n):.3g}") for i in range(n + 1)]


FIVE_PARAMS = Space(
    {
        "lr": _lr(1e-4, 1.0),
        "optimizer": {"path": "optimizer.name", "type": "categorical", "choices": ["adam", "adamw", "sgd"]},
        "schedule": {
            "path": "schedule.name",
            "type": "categorical",
            "choices": ["constant", "cosine", "linear", "wsd"],
        },
        "warmup_fraction": {"path": "schedule.warmup_fraction", "type": "float", "low": 0.0, "high": 0.2},
        "weight_decay": {
            "path": "optimizer.weight_decay",
            "type": "float",
            "low": 1e-6,
            "high": 0.1,
            "log": True,
        },
    }
)

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "mnist1d-cnn-5p",
            ("data=mnist1d", "model=cnn1d", "optimizer=adam", "schedule=warmup_cosine"),
            FIVE_PARAMS,
            steps=1000,
            val_every=200,
            # Warmup and weight decay held at mid values, a point per decade of LR: the grid's
            # cost is LR x optimizer x schedule (5 x 3 x 4 = 60 trials, one seed).
            grid={
                "optimizer.lr": _decades(1e-4, 1.0, 1),
                "optimizer.name": ["adam", "adamw", "sgd"],
                "schedule.name": ["constant", "cosine", "linear", "wsd"],
                "schedule.warmup_fraction": [0.1],
                "optimizer.weight_decay": [1e-4],
            },
            what="5-parameter space (LR, optimizer, schedule, warmup, weight decay), 1-D CNN",
        ),
        Task(
            "mnist1d-mlp-sgd",
            ("data=mnist1d", "model=mlp", "optimizer=sgd", "optimizer.momentum=0.0", "schedule=constant"),
            Space({"lr": _lr(1e-3, 10.0)}),
            steps=1000,
            val_every=200,
            grid={"optimizer.lr": _decades(1e-3, 10.0, 4)},
            grid_seeds=(0, 1),
            what="plain SGD, constant LR, MLP: the best LR sits just below divergence",
        ),
        Task(
            "modadd-transformer",
            (
                "data=modadd",
                "model=transformer",
                "optimizer=adamw",
                "optimizer.betas=[0.9,0.98]",
                "schedule=constant",
            ),
            Space(
                {
                    "lr": _lr(1e-4, 0.1),
                    "weight_decay": {
                        "path": "optimizer.weight_decay",
                        "type": "float",
                        "low": 1e-4,
                        "high": 3.0,
                        "log": True,
                    },
                }
            ),
            steps=2000,
            val_every=200,
            grid={
                "optimizer.lr": _decades(1e-4, 0.1, 2),
                "optimizer.weight_decay": [1e-4, 1e-3, 0.01, 0.1, 1.0, 3.0],
            },
            what="(a+b) mod 23, one transformer block, AdamW: delayed generalisation",
        ),
    )
}


def task_overrides(task: str, *, steps: int | None = None, val_every: int | None = None) -> list[str]:
    """Everything that fixes a task's trial: data, model, optimizer, length, evaluation, threads."""
    t = TASKS[task]
    steps, val_every = steps or t.steps, val_every or t.val_every
    return [
        *t.overrides,
        "data.seed=0",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={val_every}",
        "trainer.num_threads=1",
        f"tracking.step_flush_every={val_every}",
    ]


def oracle_name(task: str, steps: int) -> str:
    """File stem of a task's suite oracle: the trial length is part of what it measured."""
    return f"suite-{task}-{steps}"


def cell_means(oracle: dict[str, Any]) -> list[float]:
    """The seed-mean validation accuracy of every grid cell, best first."""
    return sorted((sum(r["val_acc"]) / len(r["val_acc"]) for r in oracle["grid"]), reverse=True)


def target(cells: list[float], hit_share: float) -> float:
    """The value about ``hit_share`` of the grid's cells reach, at most the best minus a point."""
    k = max(1, round(hit_share * len(cells)))
    return min(cells[k - 1], cells[0] - 0.01)
