"""A child process that does the tracking work a trial leaves behind, off the training GIL.

The tracker's writes (MLflow's SQLAlchemy or REST client: tens of microseconds of Python
a metric, 6,000 metrics for a 3,000-step trial) and each trial's LR curve (tens of
milliseconds of matplotlib) ran on a thread of the training process, where they held
the GIL that the training loop needs: a 3,000-step CNN trial took 1.13x a raw loop.
Sent to one child process (``python -m tuner.tracking.sidecar``) that imports only MLflow and
matplotlib, they run on another core while the thread that asked waits with the GIL
released.

One request at a time, a JSON line each way. If the child cannot start or dies, the
work is done in this process from then on, as before; a request the child answers with
an error (a write the store refused, a figure that could not be saved) is an answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class Refused(Exception):
    """The child ran the request and it failed (the message says why)."""


class Sidecar:
    """The parent's end: starts the child on the first request, stops it on :meth:`close`."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[str] | None = None
        self._started = False
        self._broken = False
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        """Whether requests go to the child: after :meth:`start`, until the child fails.

        Otherwise callers do the work themselves.
        """
        return self._started and not self._broken

    def ask(self, request: dict[str, Any]) -> Any:
        """Runs a request in the child and returns its result.

        Raises:
            Refused: The child answered with an error.
            ChildGone: The child could not start or died (then :attr:`alive` is False).
        """
        with self._lock:
            if not self._started or self._broken:
                raise ChildGone("the sidecar process is not running")
            try:
                answer = self._exchange(request)
            except (OSError, ValueError, ChildGone) as exc:
                self._broken = True
                self._stop()
                raise ChildGone(str(exc)) from exc
        if "error" in answer:
            raise Refused(str(answer["error"]))
        return answer.get("result")

    def plot_lr(self, path: Path, **kwargs: Any) -> Path:
        """:func:`tuner.schedule.figure.plot_lr`, drawn by the child (or here, if it is gone)."""
        values = {
            k: v if isinstance(v, str) or not isinstance(v, Sequence) else list(v) for k, v in kwargs.items()
        }
        try:
            self.ask({"kind": "plot", "path": str(path), **values})
            return path
        except (Refused, ChildGone):
            from tuner.schedule.figure import plot_lr

            return plot_lr(path, **kwargs)  # raises the error itself if it was the figure's

    def start(self) -> None:
        """Starts the child now, so that its imports (about a second) overlap other work."""
        with self._lock:
            self._started = True
            if not self._broken:
                try:
                    self._spawn()
                except OSError:
                    self._broken = True

    def _spawn(self) -> subprocess.Popen[str]:
        if self._child is None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "tuner.tracking.sidecar"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # errors come back as answers
                text=True,
            )
        return self._child

    def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        child = self._spawn()
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.flush()
        line = child.stdout.readline()
        if not line:
            raise ChildGone("the sidecar process ended")
        answer = json.loads(line)
        assert isinstance(answer, dict)
        return answer

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        try:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()


class ChildGone(Exception):
    """The child process could not start or ended."""


# ---------------------------------------------------------------------- the child


def write_to_store(client: Any, kind: str, run_id: str | None, data: dict[str, Any]) -> str | None:
    """One tracking write through an MLflow client; the new run's id for ``create``.

    Shared by the child and by the tracker's own thread (when there is no child), and so
    the one place every tracker write reaches MLflow: text is masked here once more.
    """
    from mlflow.entities import Metric, Param, RunTag

    from tuner.secrets import mask_secrets, mask_value

    if kind == "create":
        tags = {k: mask_secrets(str(v)) for k, v in data["tags"].items()}
        run = client.create_run(data["experiment_id"], run_name=data["run_name"], tags=tags)
        return str(run.info.run_id)
    if kind == "batch":
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), int(t), int(s)) for k, v, t, s in data.get("metrics", ())],
            params=[Param(k, str(mask_value(k, v))) for k, v in data.get("params", ())],
            tags=[RunTag(k, mask_secrets(str(v))) for k, v in data.get("tags", ())],
        )
    elif kind == "text":
        client.log_text(run_id, mask_secrets(data["text"]), data["file"])
    elif kind == "artifact":
        client.log_artifact(run_id, data["path"])
    elif kind == "end":
        client.set_terminated(run_id, data["status"])
    else:
        raise ValueError(f"unknown write {kind}")
    return None


def serve() -> None:
    """The child's loop: a JSON request a line on stdin, a JSON answer a line on stdout."""
    # Ctrl-C reaches the whole process group; the parent decides when this child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Imported before the first request, while the parent is still busy with its own start.
    import matplotlib.figure  # noqa: F401
    import mlflow.tracking  # noqa: F401

    clients: dict[str, Any] = {}
    for line in sys.stdin:
        try:
            request = json.loads(line)
            kind = request.pop("kind")
            if kind == "plot":
                from tuner.schedule.figure import plot_lr

                plot_lr(Path(request.pop("path")), **request)
                answer: dict[str, Any] = {"result": None}
            else:
                uri = str(request["uri"])
                if uri not in clients:
                    from mlflow.tracking import MlflowClient

                    clients[uri] = MlflowClient(tracking_uri=uri)
                result = write_to_store(
                    clients[uri], request["write"], request.get("run_id"), request["data"]
                )
                answer = {"result": result}
        except Exception as exc:  # the answer says what failed; the parent decides
            answer = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    # Every request was answered after its work was done (committed, saved): nothing is
    # left for the interpreter's teardown, which takes about a second with MLflow loaded.
    os._exit(0)


if __name__ == "__main__":
    serve()
