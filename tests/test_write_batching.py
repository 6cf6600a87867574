"""Metrics batches of one run go to MLflow together: fewer store transactions, same records."""

from __future__ import annotations

import time

from mlflow.tracking import MlflowClient

from tuner.tracking.spool import SpoolWriter
from tuner.tracking.spool_format import Op, batch_group, merge_batches


def _batch(ref: str, **data: list[list[object]]) -> Op:
    return Op("batch", ref, dict(data))


def test_a_group_is_the_head_batches_of_one_run_within_mlflow_limits():
    queue = [
        _batch("a", metrics=[["lr", 0.1, 0, 0]]),
        _batch("a", metrics=[["lr", 0.1, 0, 1]], tags=[["t", "1"]]),
        _batch("b", metrics=[["lr", 0.1, 0, 0]]),  # another run: the group ends
        _batch("a", metrics=[["lr", 0.1, 0, 2]]),
    ]
    assert batch_group(queue) == queue[:2]
    assert batch_group([Op("end", "a", {"status": "FINISHED"}), *queue]) == [
        Op("end", "a", {"status": "FINISHED"})
    ]
    # MLflow refuses a key twice in one batch, and more than 1,000 metrics.
    repeated = [_batch("a", tags=[["t", "1"]]), _batch("a", tags=[["t", "2"]])]
    assert batch_group(repeated) == repeated[:1]
    big = [_batch("a", metrics=[["m", 1.0, 0, s] for s in range(600)]) for _ in range(2)]
    assert batch_group(big) == big[:1]


def test_merging_keeps_every_record_in_order():
    ops = [
        _batch("a", metrics=[["lr", 0.1, 0, 0]], params=[["p", "1"]]),
        _batch("a", metrics=[["lr", 0.2, 0, 1]], tags=[["t", "x"]]),
    ]
    merged = merge_batches(ops)
    assert merged.ref == "a" and merged.kind == "batch"
    assert merged.data == {
        "metrics": [["lr", 0.1, 0, 0], ["lr", 0.2, 0, 1]],
        "params": [["p", "1"]],
        "tags": [["t", "x"]],
    }


class CountingClient(MlflowClient):
    """A real client that counts its batch writes."""

    batches = 0

    def log_batch(self, *args, **kwargs):
        CountingClient.batches += 1
        return super().log_batch(*args, **kwargs)


def test_lingering_batches_are_sent_as_one_write_and_a_run_end_sends_at_once(tmp_path):
    client = CountingClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(experiment).info.run_id
    # A long linger: only the run's end can send the batches before close.
    writer = SpoolWriter(client, probe=lambda: None, spool_path=None, linger=600.0)
    CountingClient.batches = 0
    for step in range(20):
        writer.submit(_batch(run_id, metrics=[["loss", 1.0 / (step + 1), 0, step], ["lr", 0.1, 0, step]]))
    writer.submit(Op("end", run_id, {"status": "FINISHED"}))
    # The end goes out without waiting out the linger, the batches before it.
    deadline = time.monotonic() + 120
    while client.get_run(run_id).info.status != "FINISHED" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert writer.close(timeout=5) == []
    assert CountingClient.batches < 20  # at most a few writes for 20 batches
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(20))
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_drain_sends_lingering_batches_at_once(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    writer = SpoolWriter(client, probe=lambda: None, spool_path=None, linger=600.0)
    writer.submit(_batch(run_id, metrics=[["loss", 0.5, 0, 0]]))
    assert writer.drain(timeout=120)
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.5]
    writer.close(timeout=5)
