"""Named points where a test makes this process signal itself, to hit a moment exactly.

``TUNER_TEST_SIGNAL=after-tell:2:KILL`` sends SIGKILL the second time the point
``after-tell`` is reached; a comma list sends several (``report:1:INT,report:1:INT`` is a
double Ctrl-C). Read here only; unset (always, outside tests) a point costs one lookup.
The points: ``before-tell`` and ``after-tell`` (around Optuna's tell of a trial's result),
``store-write-<kind>`` (a tracking write on its way to the store or the sidecar), and
``report`` (the report starts).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_PLAN = [entry.split(":") for entry in os.environ.get("TUNER_TEST_SIGNAL", "").split(",") if entry]
_reached: Counter[str] = Counter()


def point(name: str) -> None:
    """Marks a named point; sends the signals planned for this time it is reached."""
    if not _PLAN:
        return
    _reached[name] += 1
    for where, nth, sig in _PLAN:
        if where == name and int(nth) == _reached[name]:
            os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))
