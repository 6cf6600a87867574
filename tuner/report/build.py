"""The study report: plots, the recommended LR and its range, and how to train it again.

Written under ``paths.study_dir`` (``report.md``, ``report.html``, ``plots/``) and logged
to the study's parent MLflow run, at the end of every study and by ``mode=report``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from tuner.errors import UserError
from tuner.report.analysis import LRRange, importances, robust_lr, sensitivity
from tuner.report.budgets import best_by_length
from tuner.report.document import Doc
from tuner.report.figures import Artifact
from tuner.report.gather import StudyData, load_study_data, trial_config_text
from tuner.report.plots import draw_all
from tuner.report.reproduce import reproduce_command, shell_line
from tuner.search.widen import history, short
from tuner.secrets import mask_secrets
from tuner.study.ties import plateau, raw_value


@dataclass
class Report:
    """What a report run wrote."""

    markdown: Path
    html: Path
    artifacts: list[Artifact]
    basin: LRRange | None
    command: list[str] | None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _conf_dir() -> Path:
    from tuner.config.path import config_dir

    return config_dir()


def write_report(
    cfg: DictConfig, study: optuna.Study, *, client: MlflowClient | None, parent_run_id: str | None = None
) -> Report:
    """Draws the plots, writes the report and logs both to the parent run (if there is one)."""
    rep = cfg.get("report") or {}
    top, tolerance = int(rep.get("top", 5)), float(rep.get("tolerance", 0.02))
    kind = str(rep.get("tolerance_kind", "relative"))
    data = load_study_data(study, metric=str(cfg.study.metric), client=client, parent_run_id=parent_run_id)
    out = Path(str(cfg.paths.study_dir))
    plots_dir = out / "plots"
    if plots_dir.exists():  # a plot that no longer applies must not linger from an earlier run
        shutil.rmtree(plots_dir)
    basin = robust_lr(data, tolerance=tolerance, kind=kind)
    found, note = importances(data)
    artifacts = draw_all(
        data, plots_dir, top=top, basin=basin, found=found, note=note, html=bool(rep.get("html", True))
    )
    doc = Doc(f"Study report: {data.name}")
    _summary(doc, data, cfg)
    _top_trials(doc, data, top)
    _recommendation(doc, data, basin, tolerance=tolerance, kind=kind)
    _budgets(doc, data, cfg)
    _sensitivity(doc, data, found, note)
    _arms(doc, data)
    command = _reproduce(doc, data, cfg)
    _plots(doc, artifacts)
    md, page = out / "report.md", out / "report.html"
    # Written to disk and logged to MLflow: the reasons and commands it quotes are masked.
    md.write_text(mask_secrets(doc.markdown()))
    page.write_text(mask_secrets(doc.html()))
    if client is not None and data.parent_run_id is not None:
        client.log_artifacts(data.parent_run_id, str(plots_dir), "plots")
        client.log_artifact(data.parent_run_id, str(md), "report")
        client.log_artifact(data.parent_run_id, str(page), "report")
    return Report(md, page, artifacts, basin, command)


def _summary(doc: Doc, data: StudyData, cfg: DictConfig) -> None:
    counts = Counter(t.state.name.lower() for t in data.trials)
    states = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no trials yet"
    goal = "maximize" if data.maximize else "minimize"
    doc.para(
        f"Study `{data.name}`: {len(data.trials)} trials ({states}), {goal} `{data.metric}`. "
        f"Written {dt.datetime.now().isoformat(timespec='seconds')}."
    )
    running = counts.get("running", 0)
    if running:
        doc.para(f"The study is still running ({running} trial(s) in progress): this is a snapshot.")
    _widenings(doc, data)
    sat = plateau(data.complete, data.metric)
    if sat:
        doc.para(f"{sat}.")
    if data.parent_run_id:
        doc.para(f"MLflow: experiment `{data.name}`, parent run `{data.parent_run_id}`.")


def _top_trials(doc: Doc, data: StudyData, top: int) -> None:
    doc.heading("Top trials")
    trials = data.top(top)
    if not trials:
        doc.para("No trial has completed yet.")
        return
    keys: list[str] = []
    for t in trials:
        keys += [k for k in t.params if k not in keys]
    rows = []
    for rank, t in enumerate(trials, 1):
        run = data.trial_runs.get(t.number)
        rows.append(
            [
                rank,
                t.number,
                *[_fmt(t.params.get(k)) for k in keys],
                _fmt(raw_value(t)),
                _fmt(t.user_attrs.get("test_acc")),
                _fmt(t.user_attrs.get("steps")),
                f"`{run.info.run_id}`" if run else "-",
            ]
        )
    doc.table(["rank", "trial", *keys, data.metric, "test_acc", "steps", "MLflow run"], rows)


def _recommendation(doc: Doc, data: StudyData, basin: LRRange | None, *, tolerance: float, kind: str) -> None:
    doc.heading("Recommended learning rate")
    if basin is None:
        why = "no learning-rate parameter was searched" if data.lr_param is None else "no trial has completed"
        doc.para(f"None: {why}.")
        return
    side = "≥" if data.maximize else "≤"
    within = (
        f"{tolerance:g} of the best value ({kind})" if kind == "absolute" else f"{tolerance:.0%} of the best"
    )
    doc.para(
        f"**Recommended {basin.param} = {basin.recommended:.3g}**: the centre, on a log scale, of the "
        f"robust range **{basin.low:.3g} – {basin.high:.3g}** ({basin.width_decades:.2f} decades)."
    )
    doc.para(
        f"The robust range holds the complete trials whose `{data.metric}` is within {within} "
        f"(`{data.metric}` {side} {basin.threshold:.4g}; `report.tolerance`={tolerance:g}, "
        f"`report.tolerance_kind`={kind}) and that lie next to the best trial in {basin.param} order, "
        f"with no worse, pruned or failed trial between: {_trials(basin.members)}. "
        f"The best trial's {basin.param} is {basin.best_lr:.3g}; the centre keeps the most distance from "
        "both edges, where the value starts to drop."
    )
    _at_edge(doc, basin)
    if len(basin.members) == 1:
        doc.para("Only one trial is within tolerance, so the range is a single point: run more trials.")
    if basin.excluded:
        doc.para(
            f"Within tolerance too but beyond a worse trial, outside the basin around the best: "
            f"{_trials(basin.excluded)}."
        )


def _budgets(doc: Doc, data: StudyData, cfg: DictConfig) -> None:
    rows = best_by_length(data, full_length=int(cfg.trainer.max_steps))
    if len(rows) < 2:  # no probes: the full length alone is the top-trials table
        return
    doc.heading("Best learning rate by training length")
    doc.para(
        "From the cooldown probes (`probe=cooldown`): a branch at step s with c cooldown steps "
        "is a whole run of s + c steps, so each trial is scored at several lengths; the last row "
        "is the complete trials at full length."
    )
    doc.table(
        ["training steps", "best trial", data.lr_param or "lr", data.metric, "trials scored"],
        [[r.length, r.trial, _fmt(r.lr), _fmt(r.value), r.scored] for r in rows],
    )


def _at_edge(doc: Doc, basin: LRRange) -> None:
    """Warns that the optimum is not bracketed when the basin reaches an end of the search."""
    if not basin.edges or basin.searched is None:
        return
    low, high = basin.searched
    for side in basin.edges:
        past, key = ("above", "high") if side == "upper" else ("below", "low")
        doc.para(
            f"**At the edge of the search**: the robust range reaches the {side} end of the searched "
            f"{basin.param} range [{short(low)}, {short(high)}], so the best {basin.param} may lie {past} "
            f"it and {basin.recommended:.3g} is not bracketed. Move `search.params.{basin.param}.{key}` "
            f"{past} {short(high if side == 'upper' else low)} and run more trials (`search.widen=true` "
            "moves it by itself, up to `search.widen_max_decades`)."
        )


def _widenings(doc: Doc, data: StudyData) -> None:
    """The ranges ``search.widen`` grew during the study, in order."""
    for name, step in history(data.study):
        doc.para(
            f"search: {name} range widened to [{short(step['low'])}, {short(step['high'])}] after "
            f"{step['after']} complete trials (best trials at the {step['side']} edge)."
        )


def _trials(numbers: tuple[int, ...]) -> str:
    return ("trial " if len(numbers) == 1 else "trials ") + ", ".join(map(str, numbers))


def _sensitivity(doc: Doc, data: StudyData, found: dict[str, float], note: str | None) -> None:
    doc.heading("Sensitivity per parameter")
    if found:
        doc.table(["parameter", "importance (fANOVA)"], [[k, f"{v:.3f}"] for k, v in found.items()])
    if note:
        doc.para(f"Importances: {note}.")
    for name, buckets in sensitivity(data).items():
        doc.heading(name, 3)
        doc.table(
            [name, "complete trials", f"best {data.metric}", f"mean {data.metric}"],
            [[b.label, b.count, f"{b.best:.4g}", f"{b.mean:.4g}"] for b in buckets],
        )


def _arms(doc: Doc, data: StudyData) -> None:
    doc.heading("Tuned against LR-free optimizers")
    runs = data.lr_free_runs
    if not runs:
        doc.para("No LR-free arm was run for this study (runs tagged `tuner.arm=lr_free`).")
        return
    best = data.complete[0] if data.complete else None
    rows = []
    if best is not None:
        rows.append(
            [
                "tuned (best trial)",
                f"trial {best.number}",
                _fmt(raw_value(best)),
                _fmt(best.user_attrs.get("test_acc")),
            ]
        )
    for run in runs:
        m, p = run.data.metrics, run.data.params
        optimizer = (
            p.get("optimizer") or p.get("optimizer.name") or run.data.tags.get("tuner.optimizer") or "-"
        )
        value = m.get(data.metric, m.get("value"))
        rows.append(
            [
                f"LR-free: {optimizer}",
                run.info.run_name or run.info.run_id,
                _fmt(value),
                _fmt(m.get("test_acc")),
            ]
        )
    doc.table(["arm", "run", data.metric, "test_acc"], rows)


def _reproduce(doc: Doc, data: StudyData, cfg: DictConfig) -> list[str] | None:
    doc.heading("Reproduce the best trial")
    if not data.complete:
        doc.para("No trial has completed yet.")
        return None
    best = data.complete[0]
    text = trial_config_text(data, best.number)
    if text is not None:
        trial_cfg = yaml.safe_load(text)
        source = "its recorded config (`trial_config.yaml` of its MLflow run)"
    else:
        from tuner.search.space import apply, parse_space

        specs = parse_space(cfg.search.get("params") or {}, cfg)  # checked by the hub before the report
        trial_cfg = OmegaConf.to_container(apply(cfg, specs, best.params), resolve=True)
        source = "this command's config with the trial's sampled values"
    from tuner.config.path import user_config_dir

    args = reproduce_command(
        trial_cfg, conf=_conf_dir(), study_name=f"{data.name}-trial{best.number}", user_dir=user_config_dir()
    )
    doc.para(f"Trains trial {best.number} again as a one-trial study, from {source}:")
    doc.code(shell_line(args))
    return args


def _plots(doc: Doc, artifacts: list[Artifact]) -> None:
    doc.heading("Plots")
    listing: list[tuple[str, str]] = []
    for art in artifacts:
        doc.heading(art.title, 3)
        if art.png is not None:
            doc.image(art.title, f"plots/{art.png.name}")
            listing.append((art.png.name, f"plots/{art.png.name}"))
        if art.html is not None:
            doc.links([(f"{art.title} (interactive)", f"plots/{art.html.name}")])
            listing.append((art.html.name, f"plots/{art.html.name}"))
        if art.note:
            doc.para(f"Not drawn: {art.note}." if art.png is None else f"Note: {art.note}.")
    doc.heading("Files")
    doc.links(listing)


def load_for_report(cfg: DictConfig) -> optuna.Study:
    """The study named by ``study.name`` from the configured storage.

    Raises:
        UserError: an in-memory storage, or no study of that name.
    """
    from tuner.storage.storages import build_storage, mask_password

    storage = build_storage(cfg)
    where = str(cfg.storage.get("url") or cfg.storage.get("path") or "memory")
    if storage is None:
        raise UserError(
            "storage.backend",
            "memory",
            "a memory study is gone when its run ends; report on storage=journal or sqlite",
        )
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
    if str(cfg.study.name) not in names:
        known = ", ".join(names[:10]) or "none"
        raise UserError(
            "study.name", cfg.study.name, f"no such study in {mask_password(where)} (studies there: {known})"
        )
    return optuna.load_study(study_name=str(cfg.study.name), storage=storage)
