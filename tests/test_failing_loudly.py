"""Studies that fail must say so: a non-zero exit code and one line with the first cause.

Each test checks the README's exit code, that no traceback is printed and that nothing is
left RUNNING in Optuna or MLflow.
"""

from __future__ import annotations

from tests.conftest import REPO, TINY, run_subprocess, running_anywhere
from tests.test_faults import SCRIPTED, assert_same_in_mlflow, load_study
from tuner.tracking.tracker import local_uri


def test_a_study_whose_every_trial_failed_exits_3_with_the_first_reason(tmp_path, script):
    script("raise", "raise", "raise")
    # A real process: matplotlib's warnings reach its console, not pytest's capture.
    args = (*TINY, *SCRIPTED, "study.n_trials=3", "study.name=all-fail")
    done = run_subprocess(*args, cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    code, out, err = done.returncode, done.stdout, done.stderr
    assert code == 3, out + err
    lines = [line for line in err.splitlines() if line.startswith("stopped:")]
    assert lines == [
        "stopped: no trial completed (3 failed); the first failure, trial 0: RuntimeError: boom in user code"
    ]
    assert "Traceback" not in out + err and "Warning" not in out + err
    study = load_study(tmp_path / "runs", "all-fail")
    assert len(study.trials) == 3
    assert_same_in_mlflow(study, local_uri(tmp_path / "runs"))
    assert running_anywhere(tmp_path / "runs", "all-fail") == []


def test_local_workers_that_all_crash_fail_the_command_with_the_first_ones_error(tmp_path, script):
    script(*["crash"] * 6)  # every build after the launcher's own check
    args = (*TINY, *SCRIPTED, "study.name=crashing", "launcher=local", "launcher.workers=2")
    done = run_subprocess(*args, "report.enabled=false", cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    stopped = [line for line in done.stderr.splitlines() if line.startswith("stopped:")]
    assert len(stopped) == 1
    assert stopped[0].startswith("stopped: 2 of 2 workers failed; worker 0: killed by SIGSEGV (its log: ")
    assert running_anywhere(tmp_path / "runs", "crashing") == []
    # The trials the workers held when they died were failed and re-queued.
    lost = [t for t in load_study(tmp_path / "runs", "crashing").trials if t.state.name == "FAIL"]
    assert lost and all(t.user_attrs["reason"].startswith("lost: its process") for t in lost)
