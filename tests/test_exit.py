"""Ending a finished process without interpreter teardown (``tuner._exit``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_exit_now_keeps_the_code_flushes_and_runs_atexit_with_an_idle_thread_pool(tmp_path):
    # An idle pool thread (MLflow's artifact uploads use one) is not a daemon: joined
    # before the threading hooks stop it, it would hang the process forever.
    marker = tmp_path / "atexit-ran"
    script = textwrap.dedent(
        f"""
        import atexit, concurrent.futures, pathlib, sys
        from tuner._exit import exit_now
        pool = concurrent.futures.ThreadPoolExecutor(1)
        pool.submit(lambda: 1).result()
        atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text("yes"))
        sys.stdout.write("unflushed, without a newline")
        exit_now(7)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 7
    assert result.stdout == "unflushed, without a newline"
    assert marker.read_text() == "yes"
