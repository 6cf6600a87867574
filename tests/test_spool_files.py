"""Reading a spool back: what was sent (acked) is skipped, run ids learned carry over."""

from __future__ import annotations

import json

from tuner.tracking.spool_format import Op, describe, load_spool, orphaned_spools, spool_file


def test_unacked_writes_come_back_in_order_with_the_ids_of_created_runs(tmp_path):
    lines = [
        {"seq": 1, "kind": "create", "ref": "pending-a", "data": {"run_name": "trial-0003"}},
        {"seq": 2, "kind": "batch", "ref": "pending-a", "data": {"metrics": [["lr", 0.1, 0, 0]]}},
        {"ack": 1, "run_id": "abc123"},
        {"seq": 3, "kind": "end", "ref": "pending-a", "data": {"status": "FINISHED"}},
        {"seq": 4, "kind": "create", "ref": "pending-b", "data": {"run_name": "trial-0004"}},
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"seq": 5, "kin')  # died mid-line
    ops, ids = load_spool(path)
    assert [(o.kind, o.ref) for o in ops] == [
        ("batch", "pending-a"),
        ("end", "pending-a"),
        ("create", "pending-b"),
    ]
    assert ids == {"pending-a": "abc123"}


def test_describe_says_run_by_run_what_is_held():
    ops = [
        Op("create", "pending-b", {"run_name": "trial-0004"}),
        Op(
            "batch",
            "pending-b",
            {"metrics": [["lr", 0.1, 0, s] for s in range(20)], "params": [["lr", "0.1"]]},
        ),
        Op("text", "pending-b", {"text": "x", "file": "trial_config.yaml"}),
        Op("end", "run-1", {"status": "FAILED"}),
    ]
    text = describe(ops, names={"pending-b": "trial-0004", "run-1": "trial-0001"}, ids={})
    assert text == (
        "trial-0004: the run itself, 20 metrics, 1 params, artifact trial_config.yaml; "
        "trial-0001: its end (FAILED)"
    )


def test_only_spools_of_ended_processes_are_orphans(tmp_path):
    mine = spool_file(tmp_path, "my/study")
    mine.write_text("")
    dead = mine.with_name(mine.name.replace(mine.name.split(".")[-2], "999999999"))
    dead.write_text("")
    assert mine.parent == tmp_path  # a "/" in the study name makes no sub-folder
    assert orphaned_spools(tmp_path, "my/study") == [dead]
