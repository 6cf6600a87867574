"""``mode=find``: the range test over several seeds, its suggestion, plot and MLflow run."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric import Fabric
from mlflow.entities import Param
from omegaconf import DictConfig

from tuner.config.nodes import plain
from tuner.data.factory import build_datamodule
from tuner.devices import trial_devices, world_size
from tuner.finder.plot import plot_curves
from tuner.finder.rangetest import Curve, cycle, ramp, range_test
from tuner.finder.rules import RULES, Marks, log_median, read_curve, spread
from tuner.models.factory import build_model, model_note
from tuner.optimizer.factory import build_optimizer
from tuner.secrets import mask_value, masked_yaml
from tuner.tracking.tracker import ROLE_TAG, STUDY_TAG, Tracker, TrialRun
from tuner.training.ddp import fabric_strategy

PNG_NAME, JSON_NAME = "finder.png", "finder.json"


@dataclass
class FinderResult:
    """The range test's answer over all seeds.

    Attributes:
        suggestion: The combined suggestion: the median over seeds of each seed's combined LR
            (its rules' trimmed geometric mean times ``finder.scale``).
        spread: Largest over smallest of the seeds' combined LRs.
        rules: Rule name -> its median over seeds.
        rule_spreads: Rule name -> its spread over seeds.
        per_seed: Per seed: ``seed``, ``rules``, ``combined``, ``steps``, ``stopped``.
        settings: The ``finder`` config it ran with.
        png: The plot, written by rank 0.
        run_id: The MLflow run (tag ``tuner.role=finder``).
        divergence: The LR at which the loss diverged, median over seeds (a seed that
            reached ``finder.end_lr`` counts as beyond it); None if the median seed did not.
    """

    suggestion: float
    spread: float
    rules: dict[str, float]
    rule_spreads: dict[str, float]
    per_seed: list[dict[str, Any]]
    settings: dict[str, Any]
    png: str | None = None
    run_id: str | None = None
    divergence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_fabric(cfg: DictConfig) -> Fabric:
    """A launched Fabric on the trainer's accelerator, devices, strategy and precision.

    On several devices the processes are already there (``tuner.training.ddp.ranks``): Fabric's own
    launcher would re-run the whole command line as each rank, a study included.
    """
    t = cfg.trainer
    strategy: Any = t.strategy
    if world_size(cfg) > 1:
        strategy = fabric_strategy(cfg)
    fabric = Fabric(
        accelerator=str(t.accelerator), devices=trial_devices(cfg), strategy=strategy, precision=t.precision
    )
    fabric.launch()
    return fabric


def one_seed(cfg: DictConfig, datamodule: pl.LightningDataModule, fabric: Fabric, seed: int) -> Curve:
    """One range test: a model initialised with ``seed`` seeing batches in ``seed``'s order."""
    finder = cfg.finder
    pl.seed_everything(seed, workers=False, verbose=False)
    net = build_model(cfg, datamodule)
    optimizer = build_optimizer(net, plain(cfg.optimizer))
    loader = datamodule.train_dataloader()
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):  # a loader with its own stream ignores the global seed
        generator.manual_seed(seed)
    lrs = ramp(float(finder.start_lr), float(finder.end_lr), int(finder.num_steps), mode=str(finder.mode))
    return range_test(
        net,
        optimizer,
        cycle(loader, rank=fabric.global_rank, world_size=fabric.world_size),
        lrs=lrs,
        beta=float(finder.smoothing),
        diverge_factor=float(finder.diverge_factor),
        fabric=fabric,
        seed=seed,
    )


def measure(
    cfg: DictConfig, datamodule: pl.LightningDataModule, fabric: Fabric, *, say: Callable[[str], None]
) -> tuple[FinderResult, list[Curve], list[Marks]]:
    """The range test once per ``finder.seeds`` seed, read and combined on rank 0, broadcast.

    Returns the result (on every rank) and rank 0's curves and marks (empty on the others).
    """
    finder = cfg.finder
    lead = fabric.global_rank == 0
    curves: list[Curve] = []
    marks: list[Marks] = []
    for seed in (int(s) for s in finder.seeds):
        started = time.monotonic()
        curve = one_seed(cfg, datamodule, fabric, seed)
        if not lead:
            continue
        mark = read_curve(curve.lrs, curve.losses, window=float(finder.window), scale=float(finder.scale))
        curves.append(curve)
        marks.append(mark)
        rules = "  ".join(f"{name} {mark.rules[name]:.2e}" for name in RULES)
        say(
            f"  seed {seed}: {len(curve.lrs)} steps in {time.monotonic() - started:.1f} s"
            f"{' (' + curve.stopped + ')' if curve.stopped else ''}: {rules} -> {mark.combined:.2e}"
        )
    result = fabric.broadcast(_combine(curves, marks, plain(finder)) if lead else None, src=0)
    assert result is not None
    return result, curves, marks


def find(
    cfg: DictConfig,
    *,
    datamodule: pl.LightningDataModule | None = None,
    tracker: Tracker | None = None,
    parent: str | None = None,
    echo: Callable[[str], None] = print,
) -> FinderResult:
    """Runs the range test once per ``finder.seeds`` seed and combines the suggestions.

    Rank 0 reads the curves, decides and broadcasts the result; only rank 0 prints, writes
    the plot and logs the MLflow run (nested under ``parent`` when given).
    """
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    datamodule = datamodule or build_datamodule(cfg)
    fabric = make_fabric(cfg)
    lead = fabric.global_rank == 0
    say = echo if lead else (lambda _line: None)
    note = model_note(cfg)
    if note:
        say(note)  # once: each seed builds the model again
    finder = cfg.finder
    say(
        f"LR range test: {finder.start_lr:g} -> {finder.end_lr:g}, {finder.mode}, {finder.num_steps} steps, "
        f"seeds {' '.join(str(s) for s in finder.seeds)} ({fabric.device}, {fabric.world_size} process(es))"
    )
    result, curves, marks = measure(cfg, datamodule, fabric, say=say)
    if lead:
        title = f"{cfg.model.get('name', 'model')} on {cfg.data.get('name', 'data')}, {cfg.optimizer.name}"
        result.png = str(
            plot_curves(
                curves,
                marks,
                suggestion=result.suggestion,
                spread=result.spread,
                path=Path(str(cfg.paths.study_dir)) / PNG_NAME,
                title=title,
            )
        )
        curves_json = Path(result.png).with_name(JSON_NAME)
        curves_json.write_text(
            json.dumps({"result": result.to_dict(), "curves": [c.to_dict() for c in curves]}, indent=1)
        )
        result.run_id = _log_run(cfg, result, curves_json, tracker=tracker, parent=parent)
        _print_summary(result, say)
    return result


def _combine(curves: list[Curve], marks: list[Marks], settings: dict[str, Any]) -> FinderResult:
    per_seed = [
        {
            "seed": curve.seed,
            "rules": mark.rules,
            "combined": mark.combined,
            "steps": len(curve.lrs),
            "stopped": curve.stopped,
            "diverged_at": diverged_at(curve),
        }
        for curve, mark in zip(curves, marks, strict=True)
    ]
    combined = [m.combined for m in marks]
    return FinderResult(
        suggestion=log_median(combined),
        spread=spread(combined),
        rules={name: log_median([m.rules[name] for m in marks]) for name in RULES},
        rule_spreads={name: spread([m.rules[name] for m in marks]) for name in RULES},
        per_seed=per_seed,
        settings=settings,
        divergence=divergence_point([diverged_at(curve) for curve in curves]),
    )


def diverged_at(curve: Curve) -> float | None:
    """The LR of the step at which the test stopped for divergence, or None."""
    return float(curve.lrs[-1]) if curve.stopped and len(curve.lrs) else None


def divergence_point(per_seed: list[float | None]) -> float | None:
    """The median seed's divergence LR; a seed that never diverged counts as beyond every LR.

    None when the median seed did not diverge: the test's ``end_lr`` then bounds nothing.
    """
    points = sorted(math.inf if p is None else float(p) for p in per_seed)
    if not points:
        return None
    middle = points[(len(points) - 1) // 2 : len(points) // 2 + 1]
    point = math.sqrt(middle[0] * middle[-1])
    return point if math.isfinite(point) else None


def _print_summary(result: FinderResult, say: Callable[[str], None]) -> None:
    n = len(result.per_seed)
    say(f"{'rule':<10} {'median lr':>10} {'spread':>8}   (over {n} seed{'s' if n != 1 else ''})")
    for name in RULES:
        say(f"{name:<10} {result.rules[name]:>10.3e} {result.rule_spreads[name]:>7.2f}x")
    scale = float(result.settings.get("scale", 1.0))
    how = f" ({scale:g} x the rules' mean)" if scale != 1 else ""
    say(f"{'combined':<10} {result.suggestion:>10.3e} {result.spread:>7.2f}x   <- suggested lr{how}")
    say(f"plot: {result.png}")


def _log_run(
    cfg: DictConfig, result: FinderResult, curves_json: Path, *, tracker: Tracker | None, parent: str | None
) -> str | None:
    """The finder's MLflow run in the study's experiment: settings, suggestions, plot, curves.

    Nested under the study's parent run when there is one (``search.from_finder``), through
    the study's tracker and its spool; on its own otherwise (``mode=find``).
    """
    from tuner.tracking.tracker import tracking_uri

    name = str(cfg.study.name)
    tags = {ROLE_TAG: "finder", STUDY_TAG: name}
    params: dict[str, Any] = {f"finder.{key}": value for key, value in result.settings.items()}
    params.update(
        {key: cfg[key].get("name", cfg[key].get("_target_")) for key in ("model", "data", "optimizer")}
    )
    own = tracker is None
    if tracker is None:
        tracker = Tracker(
            tracking_uri(cfg), experiment=name, artifact_root=Path(str(cfg.paths.root)) / "artifacts"
        )
    if parent is not None:
        run = tracker.start_run(
            parent, run_name="lr-finder", tags=tags, params=params, config_yaml=masked_yaml(cfg)
        )
    else:
        run_id = tracker.client.create_run(tracker.experiment_id, run_name="lr-finder", tags=tags).info.run_id
        tracker.client.log_batch(run_id, params=[Param(k, str(mask_value(k, v))) for k, v in params.items()])
        run = TrialRun(tracker, run_id)
    metrics = {"suggested_lr": result.suggestion, "spread": result.spread}
    for rule in RULES:
        slug = rule.replace("/", "_over_")
        metrics[f"lr_{slug}"] = result.rules[rule]
        metrics[f"spread_{slug}"] = result.rule_spreads[rule]
    run.log_metrics(0, metrics)
    run.log_artifact(Path(str(result.png)))
    run.log_artifact(curves_json)
    run.end("COMPLETE", value=None, reason=None)
    if own:
        for error in tracker.close():
            print(f"warning: MLflow write failed: {error}")
    return run.mlflow_id
