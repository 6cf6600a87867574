"""The spool: tracking writes kept on disk while the store is away, and how to read them back.

A spool file is JSON lines: one line per write (``seq``, ``kind``, ``ref``, ``data``),
and one ``{"ack": seq}`` line per write later sent; what has no ack is still to send.
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.processes import process_alive

#: Placeholder run ids of runs created while the server was away start with this.
PENDING = "pending-"


@dataclass
class Op:
    """One write to the tracking store.

    Attributes:
        kind: ``create`` (a run), ``batch`` (metrics, params, tags), ``text``, ``artifact``,
            ``plot`` (a trial's LR curve, drawn then sent as ``lr_curve.png``), ``end``
            (terminate the run) or ``call`` (any callable: not kept on disk).
        ref: The run it writes to: a run id, or a placeholder of a run not yet created.
        data: The write's content (JSON-serialisable).
        call: The callable of a ``call`` write.
    """

    kind: str
    ref: str
    data: dict[str, Any] = field(default_factory=dict)
    call: Callable[[], object] | None = None
    seq: int = 0


def load_spool(path: Path) -> tuple[list[Op], dict[str, str]]:
    """The unsent writes of a spool file, and the run ids it learned."""
    ops: dict[int, Op] = {}
    ids: dict[str, str] = {}
    acked: dict[int, str | None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a process that died mid-write
        if "ack" in record:
            acked[int(record["ack"])] = record.get("run_id")
        else:
            ops[int(record["seq"])] = Op(record["kind"], record["ref"], record["data"])
    for seq, run_id in acked.items():
        op = ops.pop(seq, None)
        if op is not None and op.kind == "create" and run_id:
            ids[op.ref] = run_id
    return [ops[s] for s in sorted(ops)], ids


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def spool_file(spool_dir: Path, experiment: str) -> Path:
    """This process's spool file for one experiment."""
    return spool_dir / f"{_safe(experiment)}.{_safe(socket.gethostname())}.{os.getpid()}.jsonl"


def orphaned_spools(spool_dir: Path, experiment: str) -> list[Path]:
    """Spool files of this experiment left on this host by processes that have ended."""
    found = []
    prefix = f"{_safe(experiment)}.{_safe(socket.gethostname())}."
    for path in sorted(spool_dir.glob(f"{glob.escape(prefix)}*.jsonl")):
        pid = path.name.removeprefix(prefix).removesuffix(".jsonl")
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            found.append(path)
    return found


def describe(ops: list[Op], *, names: dict[str, str], ids: dict[str, str]) -> str:
    """What a list of writes holds, run by run: 'trial-0003: the run itself, 120 metrics, ...'."""
    by_run: dict[str, Counter[str]] = {}
    for op in ops:
        name = names.get(op.ref) or names.get(ids.get(op.ref, ""), op.ref)
        counts = by_run.setdefault(name, Counter())
        if op.kind == "batch":
            for part in ("metrics", "params", "tags"):
                counts[part] += len(op.data.get(part, ()))
        elif op.kind == "plot":
            counts["artifact lr_curve.png"] += 1
        elif op.kind in ("text", "artifact"):
            counts[f"artifact {op.data.get('file') or Path(op.data['path']).name}"] += 1
        elif op.kind == "end":
            counts[f"its end ({op.data['status']})"] += 1
        else:
            counts["the run itself" if op.kind == "create" else "other writes"] += 1
    parts = []
    for name, counts in by_run.items():
        shown = ", ".join(
            f"{n} {k}" if k in ("metrics", "params", "tags", "other writes") else k
            for k, n in counts.items()
            if n
        )
        parts.append(f"{name}: {shown}")
    return "; ".join(parts)


#: MLflow's limits on one log_batch call.
_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}


def batch_group(queue: Iterable[Op]) -> list[Op]:
    """The batch writes at the head of ``queue`` for one run that fit in one MLflow batch.

    Just the head when it is another kind of write. A key set twice in one MLflow batch
    is refused, so a batch that repeats a param or tag key starts the next group.
    """
    ops = iter(queue)
    head = next(ops)
    group = [head]
    if head.kind != "batch":
        return group
    counts = {key: len(head.data.get(key, ())) for key in _LIMITS}
    keys = {key: {item[0] for item in head.data.get(key, ())} for key in ("params", "tags")}
    for op in ops:
        if op.kind != "batch" or op.ref != head.ref:
            break
        sizes = {key: len(op.data.get(key, ())) for key in _LIMITS}
        if any(counts[key] + sizes[key] > limit for key, limit in _LIMITS.items()):
            break
        new = {key: {item[0] for item in op.data.get(key, ())} for key in keys}
        if any(keys[key] & new[key] for key in keys):
            break
        for key in _LIMITS:
            counts[key] += sizes[key]
        for key in keys:
            keys[key] |= new[key]
        group.append(op)
    return group


def merge_batches(ops: list[Op]) -> Op:
    """One batch write carrying the metrics, params and tags of several, in order."""
    data: dict[str, list[Any]] = {}
    for op in ops:
        for key in _LIMITS:
            data.setdefault(key, []).extend(op.data.get(key, ()))
    return Op("batch", ops[0].ref, {key: items for key, items in data.items() if items})
