"""The MLflow UI, opened in a real headless Chromium, shows a study that logged to a server.

Needs Debian's ``chromium`` and the ``playwright`` package (``scripts/ci/setup-browser.sh``);
Playwright drives the system Chromium over CDP and downloads no browser of its own.
The screenshots are kept under ``tests/artifacts/`` (their paths are printed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, TINY, missing_service
from tests.services import free_port, start, stop, wait_http
from tuner.tracking.tracker import EXPERIMENT_KIND, MODEL_TRAINING, runs_page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "tests" / "artifacts"


def _need_browser() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append("Debian's chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        message = f"needs {' and '.join(missing)}: run scripts/ci/setup-browser.sh"
        missing_service(message)


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """``mlflow server`` on an SQLite store under tmp_path; yields its URL."""
    port, log = free_port(), tmp_path / "mlflow-server.log"
    proc = start(
        [
            sys.executable, "-m", "mlflow", "server",  # this interpreter's mlflow, not PATH's
            "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination", str(tmp_path / "server-artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        log=log,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no background job workers
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture
def chromium(tmp_path: Path):
    """Headless Chromium started here (so it is stopped by its pid); yields its CDP URL."""
    _need_browser()
    port, log = free_port(), tmp_path / "chromium.log"
    proc = start(
        [
            CHROMIUM, *CHROMIUM_ARGS, f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1", f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1600,1000", "about:blank",
        ],
        log=log,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/json/version", proc, log=log, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def _run_link(page, run_id: str):
    """The link to a run in the runs table."""
    return page.locator(f"a[href$='/runs/{run_id}']").first


@pytest.mark.slow
def test_mlflow_ui_lists_the_study_and_draws_a_trials_lr(mlflow_server, chromium, run_cli):
    from playwright.sync_api import sync_playwright

    code, out, err = run_cli(
        *TINY, "study.n_trials=3", "study.name=ui-study", "pruner=none", f"tracking.uri={mlflow_server}"
    )
    assert code == 0, out + err
    assert "Report and plots:" in out and "warning" not in out  # plots went to the server too
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("ui-study")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("tuner.role") == "study")
    trials = sorted(
        (r for r in runs if r.data.tags.get("tuner.role") == "trial"), key=lambda r: r.info.run_name or ""
    )
    assert len(trials) == 3
    assert experiment.tags.get(EXPERIMENT_KIND) == MODEL_TRAINING
    assert f"open {runs_page(mlflow_server, experiment.experiment_id)}" in out
    assert "plots/metric_vs_lr.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = [ARTIFACTS / "mlflow-ui-runs.png", ARTIFACTS / "mlflow-ui-trial-lr.png"]
    base = f"{mlflow_server}/#/experiments/{experiment.experiment_id}"

    with sync_playwright() as pw:
        browser = pw.chromium.connect_over_cdp(chromium)
        page = browser.contexts[0].new_page()
        page.set_viewport_size({"width": 1600, "height": 1000})
        page.set_default_timeout(90_000)

        page.goto(f"{mlflow_server}/#/experiments")
        listed = page.locator(f"a[href$='/experiments/{experiment.experiment_id}']", has_text="ui-study")
        listed.first.wait_for()

        # The page the command prints is the runs table, parent and nested trials.
        page.goto(runs_page(mlflow_server, experiment.experiment_id))
        parent_link = _run_link(page, parent.info.run_id)
        parent_link.wait_for()
        assert parent_link.inner_text() == "ui-study"
        # Nested runs are folded under their parent: unfold them.
        row = page.locator("[role=row]", has=page.locator(f"a[href$='/runs/{parent.info.run_id}']"))
        row.locator("button[data-component-id*='runnamecellrenderer']").first.click()
        for trial in trials:
            link = _run_link(page, trial.info.run_id)
            link.wait_for()
            assert link.inner_text() == trial.info.run_name
        page.screenshot(path=str(shots[0]), full_page=True)

        trial = trials[0]
        page.goto(f"{base}/runs/{trial.info.run_id}/model-metrics")
        card = page.locator("[data-testid=experiment-view-compare-runs-card]").filter(
            has=page.get_by_text("lr", exact=True)
        )
        line = card.first.locator("path.js-line").first
        line.wait_for()
        path = line.get_attribute("d") or ""
        assert path.count("L") >= 2, f"the lr chart has no line: d={path!r}"
        card.first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots[1]), full_page=False)
        page.close()
        browser.close()

    for shot in shots:
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
