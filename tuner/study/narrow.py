"""``search.from_finder=true``: run the range test before a study, search around its answer.

The study is fingerprinted on the *configured* space (and on the switch itself), not on the
narrowed bounds, and the finder's answer is stored in the study's user attributes: running
the same command again reopens the same study and searches the same narrowed range
without repeating the range test.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import optuna
import pytorch_lightning as pl
from mlflow.entities import Param
from omegaconf import DictConfig

from tuner.config.nodes import plain
from tuner.search.space import ParamSpec
from tuner.search.widen import FINDER_ATTR
from tuner.study.optuna_study import build_sampler
from tuner.tracking.tracker import Tracker

__all__ = ["FINDER_ATTR", "bracket", "first_lrs", "narrow_bounds", "narrow_from_finder"]


def narrow_bounds(low: float, high: float, suggestion: float, factor: float) -> tuple[float, float]:
    """``[suggestion / factor, suggestion * factor]``, slid inside ``[low, high]``.

    The configured range is the person's prior: a suggestion outside it moves the window to
    the nearer end rather than past it, and a range already narrower than the window stays.
    """
    if high / low <= factor**2:
        return low, high
    centre = min(max(suggestion, low * factor), high / factor)
    return centre / factor, centre * factor


def bracket(
    low: float, high: float, suggestion: float, factor: float, divergence: float | None
) -> tuple[float, float]:
    """The searched range: ``[suggestion / factor, divergence]`` where the test diverged.

    The divergence point is where a constant LR stops training at all, so it is the
    bracket's natural upper end (the best constant LR of plain SGD often sits at a third
    to a half of it, above ``suggestion * factor`` on some tasks). Without one, or with one
    outside ``[low, high]``, it is :func:`narrow_bounds`.
    """
    if divergence is None or not low < divergence:
        return narrow_bounds(low, high, suggestion, factor)
    top = min(high, divergence)
    # A suggestion at or past the divergence point still leaves a window below it.
    return max(low, min(suggestion, top) / factor), top


def first_lrs(
    suggestion: float, divergence: float | None, low: float, high: float, count: int
) -> list[float]:
    """The LRs of the first trials (``search.finder_enqueue``), most trusted first.

    The suggestion itself; a third of the divergence point, where plain SGD's best constant
    LR often sits; then a factor sqrt(3) (a quarter decade) above the suggestion, since the
    rules that mark an early, steep fall read 0.5 to 0.6 decades low on some tasks, and as
    much below it. Each is kept inside ``[low, high]``; one within a tenth of a decade of
    an earlier one would repeat it and is left out.
    """
    candidates = [
        suggestion,
        divergence / 3 if divergence else None,
        suggestion * 3**0.5,
        suggestion / 3**0.5,
    ]
    chosen: list[float] = []
    for lr in candidates:
        if lr is None:
            continue
        lr = min(max(lr, low), high)
        if all(abs(math.log10(lr / c)) >= 0.1 for c in chosen):
            chosen.append(lr)
    return chosen[:count]


# long: resume check, range test, narrowing and records run in order on the same values
def narrow_from_finder(
    cfg: DictConfig,
    specs: Sequence[ParamSpec],
    study: optuna.Study,
    datamodule: pl.LightningDataModule,
    *,
    tracker: Tracker,
    parent: str,
    echo: Callable[[str], None] = print,
) -> list[ParamSpec]:
    """The search space with the LR parameter narrowed around the range test's suggestion.

    Without ``search.from_finder`` the space comes back unchanged. Records the finder's
    result and the bounds on the study's parent run (params ``finder.*``, tags ``tuner.finder.*``).
    """
    if not cfg.search.get("from_finder", False):
        return list(specs)
    name = str(cfg.search.get("finder_param", "lr"))
    spec = next(s for s in specs if s.name == name)
    record: dict[str, Any] | None = study.user_attrs.get(FINDER_ATTR)
    if record is None:
        from tuner.finder.run import find
        from tuner.training import ddp

        with ddp.ranks(cfg, role="find"):
            result = find(cfg, datamodule=datamodule, tracker=tracker, parent=parent, echo=echo)
        low, high = bracket(
            float(spec.low or 0),
            float(spec.high or 0),
            result.suggestion,
            float(cfg.search.finder_factor),
            result.divergence,
        )
        record = {
            "param": name,
            "low": low,
            "high": high,
            "configured": [spec.low, spec.high],
            "factor": float(cfg.search.finder_factor),
            "result": result.to_dict(),
        }
        # Enqueued once, with the range test: a resumed study finds them done or waiting.
        record["enqueued"] = _enqueue(cfg, study, name, result.suggestion, result.divergence, (low, high))
        study.set_user_attr(FINDER_ATTR, record)
        if record["enqueued"]:
            echo(f"finder: first trials at {name} " + ", ".join(f"{lr:.3g}" for lr in record["enqueued"]))
    else:
        echo(f"finder: reusing the range test stored with study {study.study_name} (not run again)")
        if record["result"]["settings"] != plain(cfg.finder):
            echo(
                "note: the finder settings differ from those this study was narrowed with; they are "
                "ignored (pick a new study.name to run the range test again)"
            )
    narrowed = [replace(s, low=record["low"], high=record["high"]) if s.name == name else s for s in specs]
    if cfg.sampler.name == "grid":  # a grid is fixed when the sampler is built
        study.sampler = build_sampler(cfg, narrowed)
    _record(tracker, parent, record)
    result = record["result"]
    diverged = f", diverged at {result['divergence']:.3g}" if result.get("divergence") else ""
    echo(
        f"finder: lr {result['suggestion']:.3g} (spread x{result['spread']:.2f} over "
        f"{len(result['per_seed'])} seeds{diverged}) -> search.params.{name} in [{record['low']:.3g}, "
        f"{record['high']:.3g}] (configured [{spec.low:g}, {spec.high:g}])"
    )
    return narrowed


def _enqueue(
    cfg: DictConfig,
    study: optuna.Study,
    name: str,
    suggestion: float,
    divergence: float | None,
    bounds: tuple[float, float],
) -> list[float]:
    """Queues the first trials at the range test's LRs (:func:`first_lrs`); their LRs.

    A grid's points are fixed, so nothing is queued for ``sampler=grid``.
    """
    # No more than the study runs: a queued trial left over would wait in the storage.
    count = min(int(cfg.search.get("finder_enqueue", 3)), int(cfg.study.n_trials))
    if count <= 0 or cfg.sampler.name == "grid":
        return []
    lrs = first_lrs(suggestion, divergence, *bounds, count)
    for lr in lrs:
        study.enqueue_trial({name: lr}, user_attrs={"enqueued": "finder"}, skip_if_exists=True)
    return lrs


def _record(tracker: Tracker, parent: str, record: dict[str, Any]) -> None:
    result = record["result"]
    name = record["param"]
    params = {
        "finder.suggested_lr": result["suggestion"],
        "finder.spread": result["spread"],
        f"finder.{name}.low": record["low"],
        f"finder.{name}.high": record["high"],
        "finder.factor": record["factor"],
    }
    tags = {
        "tuner.finder.rules": json.dumps(result["rules"]),
        "tuner.finder.seeds": json.dumps([s["seed"] for s in result["per_seed"]]),
        "tuner.finder.run_id": str(result.get("run_id")),
        "tuner.finder.png": str(result.get("png")),
    }
    # Through the tracker's writer, in order with the study's other writes.
    batch = [Param(k, repr(float(v))) for k, v in params.items()]
    tracker.submit(lambda: tracker.client.log_batch(parent, params=batch))
    tracker.set_tags(parent, tags)
