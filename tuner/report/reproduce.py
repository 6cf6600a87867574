"""The command line that trains a recorded trial again.

It is derived from the trial's resolved config (``trial_config.yaml`` in its MLflow run),
not from the command that started the study: that works for studies started from any
command, experiment overlay or worker. Per config group the option closest to the
trial's section is chosen (``optimizer=sgd``), then every leaf that still differs is set
(``trainer.max_steps=60``), added (``+key=...``) or removed (``~key``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

#: Sections that decide what a trial trains; paths, storage and tracking do not.
GROUPS = ("data", "model", "optimizer", "schedule", "trainer")
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")
_WORDS = {"null", "true", "false", "inf", "nan", "none", "yes", "no", "on", "off"}


def hydra_value(value: Any) -> str:
    """A value written in Hydra's override grammar, so it parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if _BARE.fullmatch(value) and value.lower() not in _WORDS:
            return value
        return _quoted(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return hydra_value(str(value))


def _quoted(text: str) -> str:
    """A single-quoted Hydra string. Hydra reads a backslash as an escape only in a run of
    backslashes that ends at a quote or at the closing quote; elsewhere it is literal."""

    def escape(match: re.Match[str]) -> str:
        run, quote = match.group(1), match.group(2)
        return run * 2 + ("\\'" if quote else "")

    return "'" + re.sub(r"(\\*)('|$)", escape, text) + "'"


def _leaves(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, Mapping) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}"))
        return out
    return {prefix: node}


def _diff(want: Mapping[str, Any], have: Mapping[str, Any]) -> list[str]:
    tokens = []
    for key, value in want.items():
        if key not in have:
            tokens.append(f"+{key}={hydra_value(value)}")
        elif have[key] != value:
            tokens.append(f"{key}={hydra_value(value)}")
    tokens += [f"~{key}" for key in have if key not in want]
    return tokens


def _defaults(conf: Path) -> dict[str, str]:
    root = OmegaConf.to_container(OmegaConf.load(conf / "config.yaml"))
    assert isinstance(root, dict)
    chosen: dict[str, str] = {}
    for entry in root.get("defaults", []):
        if isinstance(entry, dict):
            chosen.update({str(k): str(v) for k, v in entry.items() if v is not None})
    return chosen


def _option(path: Path, group: str, seed: Any) -> dict[str, Any]:
    """A group option's section as the composed config would hold it (interpolations resolved)."""
    root = OmegaConf.create({"seed": seed, group: OmegaConf.load(path)})
    full = OmegaConf.to_container(root, resolve=True)
    assert isinstance(full, dict)
    section = full[group]
    assert isinstance(section, dict)
    return section


def _option_files(conf: Path, user_dir: Path | None, group: str) -> list[Path]:
    """A group's option files: the package's, then the ones ``--config-dir`` adds (never shadowing)."""
    files = sorted((conf / group).glob("*.yaml"))
    if user_dir is not None:
        names = {p.stem for p in files}
        files += [p for p in sorted((user_dir / group).glob("*.yaml")) if p.stem not in names]
    return files


def reproduce_overrides(
    trial_cfg: Mapping[str, Any], *, conf: Path, user_dir: Path | None = None
) -> list[str]:
    """Overrides that make the default config train exactly this trial config.

    Args:
        trial_cfg: The trial's resolved config (a plain mapping).
        conf: The ``conf/`` tree the command will compose from.
        user_dir: The person's ``--config-dir`` folder, whose options are candidates too.
    """
    defaults = _defaults(conf)
    root = OmegaConf.to_container(OmegaConf.load(conf / "config.yaml"))
    assert isinstance(root, dict)
    seed = trial_cfg.get("seed", root.get("seed"))
    tokens: list[str] = []
    if seed != root.get("seed"):
        tokens.append(f"seed={hydra_value(seed)}")
    for group in GROUPS:
        want = _leaves(trial_cfg.get(group, {}), group)
        default = defaults.get(group)
        best: tuple[int, str, list[str]] | None = None
        for path in _option_files(conf, user_dir, group):
            have = _leaves(_option(path, group, seed), group)
            diff = _diff(want, have)
            score = len(diff) + (0 if path.stem == default else 1)
            if best is None or score < best[0]:
                best = (score, path.stem, diff)
        if best is None:
            continue
        if best[1] != default:
            tokens.append(f"{group}={best[1]}")
        tokens += best[2]
    study = _option(conf / "study" / f"{defaults.get('study', 'default')}.yaml", "study", seed)
    for key in ("metric", "direction"):
        value = trial_cfg.get("study", {}).get(key)
        if value is not None and value != study.get(key):
            tokens.append(f"study.{key}={hydra_value(value)}")
    return tokens


def reproduce_command(
    trial_cfg: Mapping[str, Any], *, conf: Path, study_name: str, user_dir: Path | None = None
) -> list[str]:
    """``python -m tuner ...`` arguments that train the trial again as a one-trial study.

    The search space is switched off (``search.params=null``) so the trial's own values
    are trained, not sampled again; pruning is off so the one trial runs to the end.
    """
    return [
        *(["--config-dir", str(user_dir)] if user_dir is not None else []),
        *reproduce_overrides(trial_cfg, conf=conf, user_dir=user_dir),
        "search.params=null",
        "pruner=none",
        "study.n_trials=1",
        f"study.name={hydra_value(study_name)}",
    ]


def shell_line(args: list[str]) -> str:
    """The arguments as one shell command line."""
    return " ".join(["python", "-m", "tuner", *(shlex.quote(a) for a in args)])
