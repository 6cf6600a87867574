"""MLflow writes that outlive an outage or the process: kept on disk until sent.

Every write of a study goes through one :class:`SpoolWriter` thread, in order. Each one
is first appended to a JSONL spool file (``<spool_dir>/<experiment>.<host>.<pid>.jsonl``),
when it is submitted, and acknowledged there once sent: a write that the thread still
holds (batched, queued behind a slow one, in the sidecar) when the process is
interrupted or killed is on disk, whatever the moment. The file is removed whenever
every write in it is sent. When a write fails and the server does not answer its health
check, the writer enters an outage: the study goes on and the writer retries with an
exponential backoff; when the server answers again the spool is sent in order. A spool
left behind (the process ended first) is sent by the next run of the same study on
this host. A write the server rejects (the server answers, the write fails three
times) is dropped and reported.

Writes are sent at least once: one in flight when the process dies is sent again
(MLflow keeps one copy of a metric logged twice with the same step and time).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from tuner._testpoint import point
from tuner.secrets import mask_secrets
from tuner.tracking.sidecar import ChildGone, Refused, Sidecar, write_to_store
from tuner.tracking.spool_format import PENDING, Op, batch_group, describe, load_spool, merge_batches

_REJECTED_AFTER = 3


class SpoolWriter:
    """Runs tracking writes in order on one thread; survives the store going away.

    Args:
        client: The MLflow client.
        probe: Returns None when the store answers, else why not (a few words).
        spool_path: The spool file of this process (None: keep pending writes in memory only).
        max_wait: Longest wait between two retries in an outage, in seconds.
        describe_store: How messages name the store (no password).
        sidecar: Runs the writes and draws the LR curves in a child process (with its own
            client for ``uri``).
        uri: The store's tracking URI, for the sidecar.
        linger: Seconds a metrics batch may wait for the next ones to go out with it
            (any other write sends them at once).
    """

    def __init__(
        self,
        client: MlflowClient,
        *,
        probe: Callable[[], str | None],
        spool_path: Path | None,
        max_wait: float = 30.0,
        describe_store: str = "the MLflow store",
        sidecar: Sidecar | None = None,
        uri: str = "",
        linger: float = 0.0,
    ) -> None:
        self.client = client
        self.linger = linger
        self.sidecar = sidecar
        self.uri = uri
        self.probe = probe
        self.spool_path = spool_path
        self.max_wait = max_wait
        self.store = describe_store
        self.errors: list[str] = []
        self.names: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.outage_since: float | None = None
        self._lost_runs: set[str] = set()
        self._queue: deque[Op] = deque()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._seq = 0
        self._spool: Any = None
        self._closing = False
        self._deadline = float("inf")
        self._hurry = False
        self._thread = threading.Thread(target=self._run, name="tuner-mlflow", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ submitting

    def submit(self, op: Op) -> None:
        """Queues a write, kept in the spool file before this returns."""
        with self._cond:
            self._queue_op(op)
            self._cond.notify_all()

    def _queue_op(self, op: Op) -> None:
        """Numbers, spools and queues a write; the caller holds the lock."""
        self._seq += 1
        op.seq = self._seq
        if op.kind == "create":
            self.names[op.ref] = str(op.data.get("run_name"))
        self._queue.append(op)
        self._write_op(op)

    def resolve(self, ref: str) -> str | None:
        """The run id behind a run reference, once the run exists."""
        if not ref.startswith(PENDING):
            return ref
        return self.ids.get(ref)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def healthy(self) -> bool:
        return self.outage_since is None

    def drain(self, *, timeout: float | None = None) -> bool:
        """Waits until every queued write is sent (or dropped); False if ``timeout`` s passed first."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._queue, timeout=timeout)
            finally:
                self._hurry = False

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                self._wait_for_company()
                op = self._queue[0]
                group = batch_group(self._queue) if failures == 0 and self.healthy else [op]
            if len(group) > 1:
                error = self._execute(merge_batches(group))
                if error is None:
                    for each in group:
                        self._done(each, sent=True)
                    continue
            error = self._execute(op)
            if error is not None and op.ref in self._lost_runs:
                self.errors.append(f"{describe([op], names=self.names, ids=self.ids)}: {error}")
                self._done(op, sent=False)
                continue
            if error is None:
                failures = 0
                if self.outage_since is not None:
                    gone = time.time() - self.outage_since
                    self.outage_since = None
                    self._notice(f"{self.store} is back after {gone:.0f} s; sending the kept writes")
                self._done(op, sent=True)
                continue
            reason = self.probe()
            if reason is None:
                failures += 1
                if failures >= _REJECTED_AFTER:
                    self.errors.append(
                        f"{describe([op], names=self.names, ids=self.ids)}: {mask_secrets(error)}"
                    )
                    if op.kind == "create":
                        self._lost_runs.add(op.ref)
                    failures = 0
                    self._done(op, sent=False)
                else:
                    self._wake.wait(0.2 * failures)
                continue
            if self.outage_since is None:
                self.outage_since = time.time()
                failures = 0
                where = f"kept in {self.spool_path}" if self.spool_path else "kept in memory"
                self._notice(
                    f"{self.store} does not answer ({reason}); the study goes on, its logs are {where} "
                    "and sent when the store is back"
                )
            failures += 1
            if self._closing and time.monotonic() >= self._deadline:
                return
            self._wake.clear()
            self._wake.wait(min(self.max_wait, 0.5 * 2 ** min(failures, 10)))

    def _only_batches(self) -> bool:
        return all(op.kind == "batch" for op in self._queue)

    def _wait_for_company(self) -> None:
        """Holds a queue of metrics batches up to ``linger`` s, so they go out as one write.

        A log_batch on MLflow's SQL store costs milliseconds of CPU and holds the GIL, whatever
        its size; a trial sends one every ``tracking.step_flush_every`` steps and one per
        evaluation. Any other write (a run's end, an artifact), a drain or close sends at once.
        """
        if self.linger <= 0 or self.outage_since is not None:
            return
        self._cond.wait_for(
            lambda: self._closing or self._hurry or not self._only_batches() or len(self._queue) >= 64,
            timeout=self.linger,
        )

    def _execute(self, op: Op) -> str | None:
        """Runs one write; None on success, else the error as text."""
        try:
            if op.kind == "call":
                assert op.call is not None
                op.call()
                return None
            if op.kind == "create":
                self.ids[op.ref] = str(self._write("create", None, op.data))
                return None
            run_id = self.resolve(op.ref)
            if run_id is None:
                return f"its run {self.names.get(op.ref, op.ref)} was never created"
            if op.kind == "plot":
                self._plot(run_id, op.data)
            else:
                self._write(op.kind, run_id, op.data)
        except Refused as exc:
            return str(exc)
        except Exception as exc:  # a tracking failure must never stop the study
            return f"{type(exc).__name__}: {str(exc)[:500]}"
        return None

    def _write(self, kind: str, run_id: str | None, data: dict[str, Any]) -> str | None:
        """One write, by the sidecar process when there is one (off this process's GIL)."""
        point(f"store-write-{kind}")
        if self.sidecar is not None and self.sidecar.alive:
            request = {"kind": "store", "uri": self.uri, "write": kind, "run_id": run_id, "data": data}
            try:
                result = self.sidecar.ask(request)
                return None if result is None else str(result)
            except ChildGone:
                pass  # this thread writes from now on
        return write_to_store(self.client, kind, run_id, data)

    def _plot(self, run_id: str, data: dict[str, Any]) -> None:
        """Draws a trial's LR curve (in the sidecar when there is one) and sends it.

        Kept in the spool as its data (the LRs of the steps taken and the planned
        schedule), so a curve is drawn and sent even after an interrupt or a kill.
        """
        from tuner.schedule.plot import plan_lrs

        folder = Path(tempfile.mkdtemp(prefix="tuner-lr-"))
        try:
            kwargs = {"title": data["title"], "steps": data["steps"], "lrs": data["lrs"]}
            planned = plan_lrs(data["plan"]) if data.get("plan") else None
            path = folder / "lr_curve.png"
            if self.sidecar is not None:
                self.sidecar.plot_lr(path, planned=planned, **kwargs)
            else:
                from tuner.schedule.figure import plot_lr

                plot_lr(path, planned=planned, **kwargs)
            self._write("artifact", run_id, {"path": str(path)})
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _done(self, op: Op, *, sent: bool) -> None:
        with self._cond:
            self._queue.popleft()
            if self._spool is not None:
                ack: dict[str, Any] = {"ack": op.seq}
                if sent and op.kind == "create":
                    ack["run_id"] = self.ids[op.ref]
                self._spool.write(json.dumps(ack) + "\n")
                self._spool.flush()
                if not self._queue:  # everything in it is sent
                    self._spool.close()
                    self._spool = None
                    assert self.spool_path is not None
                    self.spool_path.unlink(missing_ok=True)
            self._cond.notify_all()

    # ------------------------------------------------------------------ the spool

    def _write_op(self, op: Op) -> None:
        """Appends a write to the spool file (opened on the first one); the caller holds the lock."""
        if op.kind == "call" or self.spool_path is None:
            return  # a callable cannot be kept on disk; reported if never sent
        if self._spool is None:
            self.spool_path.parent.mkdir(parents=True, exist_ok=True)
            self._spool = self.spool_path.open("a", encoding="utf-8")
        ref = op.ref if op.kind == "create" else self.ids.get(op.ref, op.ref)
        line = {"seq": op.seq, "kind": op.kind, "ref": ref, "data": op.data}
        # Flushed to the OS at once: a kill -9 loses nothing written before it.
        self._spool.write(json.dumps(line) + "\n")
        self._spool.flush()

    def replay(self, paths: list[Path]) -> int:
        """Queues the unsent writes of spools left by earlier processes; returns how many.

        They are first copied into this process's own spool, so they stay on disk until sent.
        """
        ops: list[Op] = []
        for path in paths:
            loaded, ids = load_spool(path)
            self.ids.update(ids)
            ops.extend(loaded)
        if not ops:
            for path in paths:
                path.unlink(missing_ok=True)
            return 0
        with self._cond:
            for op in ops:
                self._queue_op(op)
            for path in paths:
                path.unlink(missing_ok=True)
            self._cond.notify_all()
        return len(ops)

    # ------------------------------------------------------------------ the end

    def close(self, *, timeout: float) -> list[str]:
        """Sends what is pending, waiting at most ``timeout`` s for a store that is away.

        Returns:
            One line per thing that was not logged: rejected writes, and, when the store
            stayed away, what is kept in the spool (or lost, without one).
        """
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._wake.set()
        self._thread.join()
        problems = list(self.errors)
        with self._cond:
            left = list(self._queue)
            if self._spool is not None:
                self._spool.close()
                self._spool = None
        if left:
            kept = [op for op in left if op.kind != "call" and self.spool_path is not None]
            lost = [op for op in left if op not in kept]
            if kept:
                problems.append(
                    f"{self.store} did not come back: {len(kept)} writes not logged, kept in "
                    f"{self.spool_path} and sent by the next run of this study on this host: "
                    f"{describe(kept, names=self.names, ids=self.ids)}"
                )
            if lost:
                problems.append(
                    f"{len(lost)} writes lost ({self.store} away): {describe(lost, names=self.names, ids=self.ids)}"
                )
        return problems

    def _notice(self, line: str) -> None:
        print(f"warning: {line}", file=sys.stderr, flush=True)
