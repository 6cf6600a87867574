"""What a person sees while a 6-trial study runs: live panel, a line per trial, or quiet."""

from __future__ import annotations

import io
import re
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from tests.conftest import TINY
from tuner.report import study_report
from tuner.study.loop import tune
from tuner.study.progress import StudyProgress, _fmt
from tuner.validate import validate

SIX = [*TINY, "study.n_trials=6", "report.enabled=false"]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _expected(tmp_path: Path, name: str) -> tuple[dict[str, int], str]:
    """State counts and the 'best ... (trial n, lr x)' text, from the study's own storage."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))
    study = optuna.load_study(study_name=name, storage=storage)
    counts = {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    best = study.best_trial
    return counts, f"best {_fmt(best.value)} (trial {best.number}, lr {_fmt(best.params['lr'])})"


def _counts_text(counts: dict[str, int]) -> str:
    return " ".join(f"{k.lower()} {v}" for k, v in counts.items() if v)


def test_lines_mode_prints_each_trial_with_counts_and_best(tmp_path, run_cli):
    code, out, err = run_cli(*SIX, "study.name=lines")
    assert code == 0, out + err
    counts, best = _expected(tmp_path, "lines")
    assert sum(counts.values()) == 6
    for number in range(6):
        assert f"trial {number} running:" in out
    assert re.search(r"^\[6/6\] trial 5 (COMPLETE|PRUNED|FAIL) value=", out, flags=re.M)
    summary = next(line for line in out.splitlines() if line.startswith("[6/6]"))
    assert _counts_text(counts) in summary and best in summary and "left" in summary
    assert f"study lines: 6/6 done | {_counts_text(counts)} | {best}" in out
    # Lightning's own progress bars stay off during a study.
    assert "Epoch" not in out + err and "it/s" not in out + err


def test_quiet_mode_prints_the_start_the_summary_and_the_table(tmp_path, run_cli):
    code, out, err = run_cli("--quiet", *SIX, "study.name=quiet")
    assert code == 0, out + err
    counts, best = _expected(tmp_path, "quiet")
    assert "running:" not in out and "[1/6]" not in out
    assert out.startswith("study quiet: 6 trials")
    assert f"study quiet: 6/6 done | {_counts_text(counts)} | {best}" in out
    assert "best trials of quiet" in out  # the final table
    table_caption = ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()) if v)
    assert table_caption in out


def test_live_mode_draws_a_panel_with_counts_best_and_eta(tmp_path, compose_cfg):
    cfg = compose_cfg(*SIX, "study.name=live")
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=140, color_system="standard")
    with StudyProgress(console=console) as progress:
        assert progress.live
        tune(cfg, validate(cfg), progress=progress, write_report=study_report)
    raw = buffer.getvalue()
    assert "\x1b[" in raw  # drawn in place with terminal control codes, not printed line by line
    text = _ANSI.sub("", raw)
    counts, best = _expected(tmp_path, "live")
    # The panel while trials ran: the running trial, the bar, states, best and the clocks.
    assert re.search(r"running\s+trial 0: lr=", text)
    assert "6/6 trials" in text
    assert re.search(r"states\s+" + r"\s+".join(f"{k.lower()} {v}" for k, v in counts.items()), text)
    assert re.search(r"best\s+" + re.escape(best.removeprefix("best ")), text)
    assert re.search(r"time\s+\d+:\d\d elapsed, ETA \d+:\d\d", text)
    for number in range(6):
        assert re.search(rf"\[\d/6\] trial {number} (COMPLETE|PRUNED|FAIL)", text)
    assert f"study live: 6/6 done | {_counts_text(counts)} | {best}" in text


@pytest.mark.parametrize("quiet", [False, True])
def test_a_pipe_never_gets_the_live_panel(quiet):
    progress = StudyProgress(stream=io.StringIO(), quiet=quiet)
    assert not progress.live


def test_a_resumed_study_with_nothing_left_sums_up_its_earlier_trials(tmp_path, run_cli):
    args = (*TINY, "report.enabled=false", "study.name=resumed")
    assert run_cli(*args)[0] == 0
    code, out, err = run_cli(*args)
    assert code == 0, out + err
    counts, best = _expected(tmp_path, "resumed")
    assert "resuming with 2 finished" in out
    assert f"study resumed: 2/2 done | {_counts_text(counts)} | {best}" in out
    assert "none yet" not in out and "no trial run" not in out
