"""No secret leaves the process unmasked: console, logs, the Optuna journal, the MLflow store.

The model raises ``ConnectionError("could not reach postgresql://bob:s3cret@PW9@...&token=...")``:
the trial's failure reason then reaches the progress line, the stopped-early line, the
trial's user attributes, its MLflow tags and its ``traceback.txt``.
"""

from __future__ import annotations

import base64
import http.server
import io
import logging
import os
import threading
from pathlib import Path

import mlflow
import optuna
import pytest

from tests.conftest import REPO, TINY, run_subprocess
from tests.scripted_model import LEAK_PASSWORD, LEAK_TOKEN
from tuner.secrets import MASK, mask_secrets, masked_output, masked_storage
from tuner.tracking.health import probe_server

#: Pieces of the secrets: none may appear anywhere, masked or half masked.
SECRETS = (LEAK_PASSWORD, "PW9", LEAK_TOKEN)
SCRIPTED = ["model._target_=tests.scripted_model.Scripted", "pruner=none", "study.name=leaky"]


def _leaks(root: Path) -> list[str]:
    """Every file under root that holds a piece of a secret (binary stores read as bytes)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {s}" for s in SECRETS if s.encode() in data]
    return found


def _script(tmp_path: Path, *modes: str) -> dict[str, str]:
    folder = tmp_path / "script"
    folder.mkdir(exist_ok=True)
    return {
        "TUNER_TEST_DIR": str(folder),
        "TUNER_TEST_SCRIPT": ",".join(("ok", *modes)),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


def test_a_password_in_a_model_exception_is_masked_everywhere(tmp_path):
    env = _script(tmp_path, "leak", "leak")
    done = run_subprocess(
        *TINY, *SCRIPTED, "study.max_consecutive_failures=2", cwd=tmp_path, env=env, timeout=300
    )
    console = done.stdout + done.stderr
    assert "Traceback" not in console, console
    assert "stopped early" in console and "could not reach postgresql://bob:***@db.example" in console
    assert not [s for s in SECRETS if s in console], console
    assert not _leaks(tmp_path), _leaks(tmp_path)
    # The reasons are there, masked: the test would pass vacuously otherwise.
    root = tmp_path / "runs"
    study = optuna.load_study(
        study_name="leaky",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(root / "optuna.journal"))
        ),
    )
    reasons = [t.user_attrs.get("reason", "") for t in study.trials]
    assert all(f"token={MASK}" in r for r in reasons), reasons
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("leaky").experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    assert list(root.rglob("traceback.txt"))


def test_worker_logs_are_masked(tmp_path):
    """A local worker's log file is its own console: masked the same way."""
    env = _script(tmp_path, "leak", "leak", "leak")  # the worker builds one more model for its checks
    done = run_subprocess(
        *TINY, *SCRIPTED, "study.n_trials=1", "launcher=local", "launcher.workers=1",
        cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert not [s for s in SECRETS if s in done.stdout + done.stderr]
    logs = list((tmp_path / "runs").rglob("worker-*.log"))
    assert logs and "could not reach postgresql://bob:***@" in "".join(p.read_text() for p in logs)
    assert not _leaks(tmp_path), _leaks(tmp_path)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://bob:pw@db.example:5432/feat", "postgresql://bob:***@db.example:5432/feat"),
        ("http://user:s3cret@PW9@host:5000/x", "http://user:***@host:5000/x"),
        ("http://h/?password=abc&x=1", "http://h/?password=***&x=1"),
        ("host=a password='p w' user=b", "host=a password=*** user=b"),
        ("api_token=zzz, then", "api_token=***, then"),
        ("MY_SECRET = abc", "MY_SECRET = ***"),
        ("http://host:5000/a@b and mail@example.com", "http://host:5000/a@b and mail@example.com"),
    ],
)
def test_mask_secrets(text, masked):
    assert mask_secrets(text) == masked


def test_console_and_logging_are_masked_at_the_choke_point(capsys):
    stream = io.StringIO()
    logger = logging.getLogger("tuner.test_secrets")
    handler = logging.StreamHandler(stream)  # made before: holds the raw stream
    logger.addHandler(handler)
    try:
        with masked_output():
            print("url postgresql://bob:s3cret@PW9@db/x")
            try:
                raise ConnectionError("token=tok-5f2a9")
            except ConnectionError:
                logger.exception("failed with password=%s", "hunter2")
    finally:
        logger.removeHandler(handler)
    out = capsys.readouterr().out + stream.getvalue()
    assert "PW9" not in out and "hunter2" not in out and "tok-5f2a9" not in out
    assert "password=***" in out and "token=***" in out


def test_optuna_attributes_are_masked_in_the_storage(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = masked_storage(JournalStorage(JournalFileBackend(str(tmp_path / "j.journal"))))
    assert isinstance(storage, JournalStorage)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.set_user_attr("reason", "ConnectionError: postgresql://bob:s3cret@PW9@db/x")
    study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", ["password=hunter2"])
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    text = (tmp_path / "j.journal").read_text()
    assert "PW9" not in text and "hunter2" not in text
    assert study.trials[0].user_attrs["reason"] == "ConnectionError: postgresql://bob:***@db/x"


def test_the_health_probe_sends_url_credentials_as_basic_auth():
    """Issue 15, 11: ``http://user:pw@host`` was probed as the host ``user:pw@host`` (gaierror)."""
    seen: list[str | None] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert probe_server(f"http://bob:s3cret%40PW9@127.0.0.1:{port}/") is None
        assert probe_server(f"http://bob:s3cret@PW9@127.0.0.1:{port}") is None
    finally:
        server.shutdown()
    token = base64.b64encode(b"bob:s3cret@PW9").decode()
    assert seen == [f"Basic {token}", f"Basic {token}"]
