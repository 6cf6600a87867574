"""A real PostgreSQL server for tests: Debian's binaries, 127.0.0.1, a free port,
a password-protected user, stopped by process id.

(The cluster work may bring its own fixture in tests/services.py; the two can merge.)
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.mlflow_server import free_port


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries, if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("postgres")
    return Path(which).parent if which else None


class PostgresServer:
    """A throwaway cluster: ``initdb`` once, then ``postgres`` started and stopped at will.

    Args:
        password: Password of the user ``tuner`` (owner of the database ``tuner``).
    """

    def __init__(self, *, password: str) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install -y postgresql)")
        self.bindir = bindir
        self.password = password
        self.port = free_port()
        # initdb refuses to run as root, and the postgres user cannot enter pytest's 0700
        # folders: the cluster lives in its own folder owned by the user that runs it.
        self.dir = Path(tempfile.mkdtemp(prefix="tuner-pg-"))
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user)
        self.data = self.dir / "data"
        self.process: subprocess.Popen[bytes] | None = None
        pwfile = self.dir / "pw"
        pwfile.write_text(password + "\n")
        if self.user:
            shutil.chown(pwfile, self.user)
        subprocess.run(
            [
                str(bindir / "initdb"), "-D", str(self.data), "-U", "tuner", f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=self.user,
        )  # fmt: skip
        pwfile.unlink()

    @property
    def url(self) -> str:
        """The SQLAlchemy URL, password included."""
        return f"postgresql+psycopg://tuner:{self.password}@127.0.0.1:{self.port}/tuner"

    def start(self, *, timeout: float = 60.0) -> None:
        """Starts the server (127.0.0.1 only) and waits until it accepts the user."""
        log = (self.dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.bindir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
                "-p", str(self.port), "-k", str(self.dir), "-c", "fsync=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self.user,
        )  # fmt: skip
        log.close()
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user="tuner", password=self.password,
                    dbname="postgres", connect_timeout=2, autocommit=True,
                ) as conn:  # fmt: skip
                    if not conn.execute("select 1 from pg_database where datname = 'tuner'").fetchone():
                        conn.execute("create database tuner")
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log()[-2000:]}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Stops the server by its process id (SIGINT: PostgreSQL's fast shutdown)."""
        if self.process is None:
            return
        try:
            os.kill(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def log(self) -> str:
        """The server's own log."""
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def remove(self) -> None:
        """Stops the server and deletes the cluster."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
