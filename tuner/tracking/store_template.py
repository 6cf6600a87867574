"""A new local MLflow store, copied from an empty one made once per MLflow version.

MLflow makes a new SQLite store by running its ~60 Alembic migrations one by one: 3.7 s
of a launcher's start on a 2-core machine, before any worker may begin. The result is
the same empty schema every time, so the first store a machine makes is kept (under
``$XDG_CACHE_HOME/tuner``) and later ones are copies of it. Any failure falls back to
MLflow's own creation.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from pathlib import Path
from urllib.parse import unquote

import mlflow


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for any other store)."""
    # SQLAlchemy's form: sqlite:///relative/path or sqlite:////absolute/path.
    rest = uri.removeprefix("sqlite:///")
    if rest == uri or not rest or "?" in rest or rest == ":memory:":
        return None
    return Path(unquote(rest))


def cache_dir() -> Path:
    """Where the empty stores are kept: ``$XDG_CACHE_HOME/tuner`` (``~/.cache/tuner``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tuner"


def template_path() -> Path:
    """The empty store of the installed MLflow version."""
    return cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"


def create_from_template(uri: str) -> bool:
    """Creates the store of ``uri`` as a copy of the empty one, if it does not exist yet.

    Returns whether the store was copied; False leaves the creation to MLflow (another
    kind of store, an existing file, or no template, which this call then makes).
    """
    target = sqlite_file(uri)
    if target is None or target.exists():
        return False
    try:
        template = template_path()
        if not template.exists():
            _make_template(template)
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_new(template, target)
    except (OSError, sqlite3.Error):  # FileExistsError too: a racing process made it
        return False
    return True


def _make_template(template: Path) -> None:
    """Lets MLflow create an empty store, then keeps it (atomically) as the template."""
    from mlflow.tracking import MlflowClient

    template.parent.mkdir(parents=True, exist_ok=True)
    fresh = template.with_name(f".{template.name}.{uuid.uuid4().hex}")
    try:
        MlflowClient(tracking_uri=f"sqlite:///{fresh}").search_experiments(max_results=1)
        os.replace(fresh, template)  # a racing process leaves an equal file: either wins
    finally:
        fresh.unlink(missing_ok=True)


def _copy_new(source: Path, target: Path) -> None:
    """Copies one SQLite file to a path that must not exist yet (FileExistsError otherwise)."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        # SQLite's backup API: a consistent copy even while another process reads the source.
        with (
            contextlib.closing(sqlite3.connect(source)) as src,
            contextlib.closing(sqlite3.connect(partial)) as dst,
        ):
            src.backup(dst)
        os.link(partial, target)  # fails if a racing process created the store meanwhile
    finally:
        partial.unlink(missing_ok=True)
