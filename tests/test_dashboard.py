"""optuna-dashboard reads a study straight from the journal file a study writes."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TINY, missing_service
from tests.services import console_script, free_port, start, stop, wait_http


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_dashboard_lists_the_study_and_its_trials(tmp_path: Path, run_cli):
    dashboard = console_script("optuna-dashboard")
    if dashboard is None:
        missing_service(f"needs optuna-dashboard in {sys.executable}: pip install -e '.[test]'")
        return
    code, out, err = run_cli(
        *TINY, "study.n_trials=3", "study.name=dash", "pruner=none", "report.enabled=false"
    )
    assert code == 0, out + err
    journal = tmp_path / "runs" / "optuna.journal"
    port, log = free_port(), tmp_path / "dashboard.log"
    proc = start([*dashboard, str(journal), "--host", "127.0.0.1", "--port", str(port)], log=log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/meta", proc, log=log)
        studies = {s["study_name"]: s for s in _get(f"{base}/api/studies")["study_summaries"]}
        assert "dash" in studies
        detail = _get(f"{base}/api/studies/{studies['dash']['study_id']}")
        assert len(detail["trials"]) == 3
        assert {t["state"] for t in detail["trials"]} == {"Complete"}
        assert {p["name"] for p in detail["trials"][0]["params"]} == {"lr", "warmup_fraction", "schedule"}
    finally:
        stop(proc)
