"""Smoke run of the benchmark suite at its tiniest size: it runs end to end and reports
every peer on every task. Behaviour only; the figures themselves are the suite's business."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SUITE = REPO / "scripts" / "bench" / "suite.py"


def test_tiny_suite_reports_every_peer(tmp_path: Path) -> None:
    oracles, results = tmp_path / "oracles", tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(SUITE), "--size", "tiny", "--oracles", str(oracles), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # The oracles were missing, so the suite made them: a thinned grid per task, with how.
    tasks = ["mnist1d-cnn-5p", "mnist1d-mlp-sgd", "modadd-transformer"]
    for task in tasks:
        (oracle_file,) = oracles.glob(f"suite-{task}-40.json")
        oracle = json.loads(oracle_file.read_text())
        assert len(oracle["grid"]) == math.prod(len(v) for v in oracle["axes"].values()) > 1
        assert all(len(row["val_acc"]) == len(oracle["seeds"]) for row in oracle["grid"])
        assert "how" in oracle and oracle["max_steps"] == 40
    five = json.loads((oracles / "suite-mnist1d-cnn-5p-40.json").read_text())
    assert {"optimizer.lr", "optimizer.name", "schedule.name"} <= set(five["axes"])

    (result_file,) = results.glob("suite-tiny-*.json")
    assert result_file.with_suffix(".md").exists() and result_file.with_suffix(".png").exists()
    result = json.loads(result_file.read_text())
    peers = list(result["peers"])
    assert {"random", "tpe-per-process", "optuna+median", "optuna+hyperband", "lr_find", "tuner"} <= set(
        peers
    )
    # A peer whose feature this checkout lacks is left out by name, never silently.
    assert "tuner+probe" in peers or any(s.startswith("tuner+probe ") for s in result["peers_left_out"])
    assert list(result["tasks"]) == tasks
    for task in tasks:
        block = result["tasks"][task]
        # Every peer, in order, save one named as unfit for the task's space.
        unfit = {s.split(" ")[0] for s in result["peers_left_out"] if f" on {task} (" in s}
        assert list(block["peers"]) == [p for p in peers if p not in unfit]
        assert block["target"] <= block["oracle"] - 0.01 + 1e-12
        assert block["overhead"]["ratio"] > 0
        for peer, runs in result["traces"][task].items():
            assert len(runs) == result["size"]["seeds"]
            steps = [t["steps"] for t in runs[0]["trials"]]
            assert steps == sorted(steps) and steps, peer
            if peer != "lr_find":  # the others search until the budget is spent
                assert steps[-1] >= block["budget"], peer

    # The printed table: a header, a rule, then one row per peer, each with 8 cells.
    lines = done.stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| task | peer |")))
    # (modadd-transformer has every peer; its later lines belong to the task table)
    rows = [line for line in lines[start + 2 :] if line.startswith("| modadd-transformer |")][: len(peers)]
    assert [row.split(" | ")[1] for row in rows] == peers
    assert all(row.count("|") == 9 for row in rows)
    assert any(line.startswith("| tpe-per-process |") for line in lines)
    assert any(line.startswith("- modadd-transformer: random reaches") for line in lines)
    assert any(s.startswith("tuner+finder on mnist1d-cnn-5p (") for s in result["peers_left_out"])
