"""Where the configs live: the package's ``conf/`` tree and the person's ``--config-dir`` folder.

A leaf: the command line, the search families and the report all read these paths, and it
imports nothing of the package.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: Where the ``--config-dir`` folder travels to worker processes and DDP ranks.
CONFIG_DIR_ENV = "TUNER_CONFIG_DIR"


def config_dir() -> Path:
    """The ``conf/`` tree: shipped inside the package, or beside it in a source checkout."""
    shipped = resources.files("tuner") / "conf"
    if shipped.is_dir():
        return Path(str(shipped))
    return Path(__file__).resolve().parents[2] / "conf"


def user_config_dir() -> Path | None:
    """The person's own config folder (``--config-dir``), in this process or the one that started it."""
    folder = os.environ.get(CONFIG_DIR_ENV)
    return Path(folder) if folder else None
