"""Ending a finished process without Python's interpreter teardown."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_now(code: int | None) -> NoReturn:
    """Ends the process with ``code`` once its work is flushed, skipping module teardown.

    Python's finalization of the torch, Lightning and MLflow modules took about 2 s per
    process on a 2-core machine (``main`` returned at 29.7 s, the process ended at 31.9 s),
    and a local launcher waits for each worker to end before it finishes the study. What a
    normal exit does first is done here too: non-daemon threads are joined and the atexit
    handlers run (logging's flush among them); then the streams are flushed. Called from
    the main thread of a process's entry point, once its work is done.
    """
    # The interpreter's own first step of shutting down: the threading atexit hooks (which
    # tell thread pools such as MLflow's artifact uploaders to stop), then a join of every
    # non-daemon thread. Joining before those hooks would wait on idle pool threads forever.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    flush_streams()
    os._exit(code or 0)


def flush_streams() -> None:
    """Flushes stdout and stderr before an ``os._exit``, which would drop what they buffer."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe
            stream.flush()
