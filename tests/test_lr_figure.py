"""LR curves drawn by the figure process, and drawn here when that process is gone."""

from __future__ import annotations

from tuner.lr_figure import FigureProcess

CURVE = {"title": "t", "planned": [0.1, 0.05, 0.0], "steps": [0, 1, 2], "lrs": [0.1, 0.05, 0.0], "warmup": 1}


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_figure_process_draws_and_stops(tmp_path):
    figures = FigureProcess()
    first = figures.plot_lr(tmp_path / "a.png", **CURVE)
    child = figures._child
    assert child is not None and child.poll() is None  # drawn by a live child process
    second = figures.plot_lr(tmp_path / "b.png", **CURVE)
    assert _is_png(first) and _is_png(second) and figures._child is child
    figures.close()
    assert child.poll() == 0 and figures._child is None


def test_a_dead_figure_process_falls_back_to_drawing_here(tmp_path):
    figures = FigureProcess()
    figures.plot_lr(tmp_path / "a.png", **CURVE)
    assert figures._child is not None
    figures._child.kill()
    figures._child.wait()
    path = figures.plot_lr(tmp_path / "b.png", **CURVE)
    assert _is_png(path) and figures._broken and figures._child is None
    figures.close()


def test_a_bad_request_is_answered_not_fatal(tmp_path):
    figures = FigureProcess()
    # A folder that cannot be made (a file is in the way): the child answers with the error,
    # this process then tries itself and raises the same error; the child stays in use.
    (tmp_path / "file").write_text("")
    try:
        figures.plot_lr(tmp_path / "file" / "x.png", **CURVE)
    except OSError:
        pass
    else:
        raise AssertionError("drawing into a path under a file should fail")
    try:
        assert not figures._broken and figures._child is not None
        assert _is_png(figures.plot_lr(tmp_path / "ok.png", **CURVE))
    finally:
        figures.close()
