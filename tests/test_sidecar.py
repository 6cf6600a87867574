"""The sidecar process: tracking writes and LR curves off the training process, with a fallback."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tuner.tracking.sidecar import ChildGone, Refused, Sidecar

CURVE = {"title": "t", "planned": [0.1, 0.05, 0.0], "steps": [0, 1, 2], "lrs": [0.1, 0.05, 0.0], "warmup": 1}


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_child_writes_runs_to_a_real_store_and_draws(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    sidecar = Sidecar()
    sidecar.start()
    try:
        store = {"kind": "store", "uri": uri}
        run_id = sidecar.ask(
            {
                **store,
                "write": "create",
                "data": {"experiment_id": experiment, "run_name": "r", "tags": {"a": "b"}},
            }
        )
        child = sidecar._child
        assert child is not None and child.poll() is None
        metrics = [["lr", 0.1 * s, 0, s] for s in range(5)]
        sidecar.ask(
            {
                **store,
                "write": "batch",
                "run_id": run_id,
                "data": {"metrics": metrics, "params": [["p", "1"]]},
            }
        )
        sidecar.ask({**store, "write": "end", "run_id": run_id, "data": {"status": "FINISHED"}})
        png = sidecar.plot_lr(tmp_path / "lr.png", **CURVE)
        assert _is_png(png) and sidecar._child is child  # one child did it all
    finally:
        sidecar.close()
    assert child.poll() == 0
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"p": "1"} and run.data.tags["a"] == "b"
    assert [m.value for m in client.get_metric_history(run_id, "lr")] == pytest.approx(
        [0.0, 0.1, 0.2, 0.3, 0.4]
    )


def test_a_failed_write_is_an_answer_and_the_child_stays(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sidecar = Sidecar()
    sidecar.start()
    try:
        with pytest.raises(Refused, match="Exception"):
            sidecar.ask(
                {
                    "kind": "store",
                    "uri": uri,
                    "write": "end",
                    "run_id": "no-such-run",
                    "data": {"status": "FINISHED"},
                }
            )
        assert sidecar.alive and sidecar._child is not None
    finally:
        sidecar.close()


def test_a_dead_child_hands_the_work_back(tmp_path):
    sidecar = Sidecar()
    sidecar.start()
    sidecar.plot_lr(tmp_path / "a.png", **CURVE)
    assert sidecar._child is not None
    sidecar._child.kill()
    sidecar._child.wait()
    path = sidecar.plot_lr(tmp_path / "b.png", **CURVE)  # drawn here instead
    assert _is_png(path) and not sidecar.alive and sidecar._child is None
    with pytest.raises(ChildGone):
        sidecar.ask({"kind": "plot", "path": str(tmp_path / "c.png"), **CURVE})
    sidecar.close()


def test_a_figure_that_cannot_be_saved_raises_here_too(tmp_path):
    (tmp_path / "file").write_text("")
    sidecar = Sidecar()
    sidecar.start()
    try:
        with pytest.raises(OSError):
            sidecar.plot_lr(tmp_path / "file" / "x.png", **CURVE)  # a file is in the way
        assert sidecar.alive and _is_png(sidecar.plot_lr(tmp_path / "ok.png", **CURVE))
    finally:
        sidecar.close()


def test_until_started_the_work_is_done_here(tmp_path):
    sidecar = Sidecar()
    assert not sidecar.alive
    assert _is_png(sidecar.plot_lr(tmp_path / "a.png", **CURVE)) and sidecar._child is None
    with pytest.raises(ChildGone):
        sidecar.ask({"kind": "plot", "path": str(tmp_path / "b.png"), **CURVE})


def test_the_tracker_starts_its_sidecar_with_the_second_run(tmp_path):
    from tuner.tracking.tracker import Tracker, local_uri

    tracker = Tracker(local_uri(tmp_path), experiment="e", artifact_root=tmp_path)
    try:
        parent = tracker.parent_run("s", params={})
        start = dict(study_name="s", params={"lr": 0.1}, config_yaml="a: 1\n")
        tracker.start_trial(parent, number=0, **start).end("COMPLETE", value=0.5, reason=None)
        assert not tracker.sidecar.alive  # one trial in this process: no child
        tracker.start_trial(parent, number=1, **start).end("COMPLETE", value=0.6, reason=None)
        assert tracker.sidecar.alive
    finally:
        assert tracker.close() == []
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string="tags.`tuner.role` = 'trial'")
    assert sorted(r.data.metrics["value"] for r in runs) == [0.5, 0.6]


def test_the_sidecar_is_wanted_only_with_a_free_core(compose_cfg, monkeypatch):
    from tuner import devices
    from tuner.study.session import sidecar_wanted

    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)
    assert sidecar_wanted(compose_cfg("trainer.num_threads=1"))
    assert not sidecar_wanted(compose_cfg("trainer.num_threads=2"))
    assert not sidecar_wanted(compose_cfg("trainer.num_threads=null"))  # all cores train
    assert sidecar_wanted(compose_cfg("trainer.num_threads=2", "tracking.sidecar=true"))
    assert not sidecar_wanted(compose_cfg("tracking.sidecar=false"))
