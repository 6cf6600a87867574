"""What every plot of a study shares: its record, the state markers, how files are written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

#: Marker of each trial state, the same in every plot.
STYLE = {
    "COMPLETE": {"color": "tab:blue", "marker": "o", "label": "complete"},
    "PRUNED": {"color": "tab:orange", "marker": "x", "label": "pruned"},
    "FAIL": {"color": "tab:red", "marker": "v", "label": "failed"},
}


@dataclass
class Artifact:
    """One plot of the study: its PNG, its HTML twin if any, or why it is missing."""

    name: str
    title: str
    png: Path | None = None
    html: Path | None = None
    note: str | None = None


def has_plotly() -> bool:
    try:
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


def save_png(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_html(fig: Any, path: Path) -> Path:
    # One plotly.min.js beside the pages: they open offline, and it is not copied per plot.
    fig.write_html(str(path), include_plotlyjs="directory", full_html=True)
    return path
