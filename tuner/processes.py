"""Whether a process of this machine still lives, asked by its id.

Below every layer: the spool finds the files of ended writers with it, the storage's heartbeats
find dead owners of a study's slots, the tests wait for their servers to end.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether a process of this machine lives (a zombie, ended but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:  # no /proc (macOS): the signal check is all there is
        return True
