"""``python -m tuner`` and the ``tuner`` script."""

from __future__ import annotations

from typing import NoReturn

from tuner._exit import exit_now
from tuner.cli import main


def run() -> NoReturn:
    """Runs the command line and ends the process with its exit code."""
    exit_now(main())


if __name__ == "__main__":
    run()
