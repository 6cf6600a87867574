"""Real services for tests: started on 127.0.0.1 and a free port, stopped by process id.

Besides the generic helpers (``start``, ``wait_http``, ``stop``): ``postgres_server()``
starts a throwaway PostgreSQL cluster (Debian's ``postgresql``: ``initdb`` and ``pg_ctl``
as the postgres user) and yields a URL with a password; ``slurm_cluster()`` starts a
single-node SLURM cluster (Debian's ``slurm-wlm`` and ``munge``: munged, slurmctld,
slurmd) and yields the environment that points ``sbatch`` / ``squeue`` at it.
``scripts/ci/setup-postgres.sh`` and ``scripts/ci/setup-slurm.sh`` install the packages.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

from tuner.processes import process_alive


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def console_script(name: str) -> list[str] | None:
    """The command that runs a Python console script (``optuna-dashboard``) through the
    interpreter running the tests; None when its package is not installed there.

    Looked up in the interpreter's installed metadata, not on PATH: in a virtual
    environment that is not activated, PATH holds another Python's scripts, or none.
    """
    found = [ep for ep in entry_points(group="console_scripts") if ep.name == name]
    if not found:
        return None
    module, _, attr = found[0].value.partition(":")
    try:
        importlib.import_module(module)
    except ImportError:
        return None
    code = f"import sys; sys.argv[0] = {name!r}; from {module} import {attr} as main; sys.exit(main())"
    return [sys.executable, "-c", code]


def start(args: list[str], *, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Starts a service in its own process group, its output going to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own group: its workers are stopped with it
        )


def wait_http(url: str, proc: subprocess.Popen[bytes], *, log: Path, timeout: float = 180) -> None:
    """Waits until ``url`` answers 200; fails with the service's log if it dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: the service exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stops the service's process group (its id is the service's pid): TERM, then KILL."""
    with contextlib.suppress(ProcessLookupError):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
    # Workers that outlived their parent still carry its group id.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class ServiceUnavailable(RuntimeError):
    """The service cannot run on this machine (says why, for a test skip)."""


def stop_pid(pid: int, *, sig: int = signal.SIGTERM, wait: float = 30.0) -> None:
    """Sends ``sig`` to one process and waits for it to end (SIGKILL after ``wait`` s)."""
    if pid <= 0 or not process_alive(pid):
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + wait
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_alive(pid):
        os.kill(pid, signal.SIGKILL)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


# ---------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise ServiceUnavailable("PostgreSQL is not installed (run scripts/ci/setup-postgres.sh)")
    return Path(versions[-1]).parent


def _as_postgres(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Runs a server command as the postgres user when we are root (initdb refuses root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


def postgres_available() -> str | None:
    """Why PostgreSQL cannot run here, or None if it can."""
    try:
        _pg_bindir()
    except ServiceUnavailable as exc:
        return str(exc)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, but there is no postgres user to run the server as"
    return None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server on a free port of 127.0.0.1; yields ``postgresql+psycopg://`` URL.

    The URL names the role ``tuner`` with a random password and the database ``tuner``.
    The cluster lives in a temporary directory, removed afterwards; the server is
    stopped by the PID in ``postmaster.pid``.
    """
    reason = postgres_available()
    if reason:
        raise ServiceUnavailable(reason)
    bindir = _pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="tuner-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    password = secrets.token_hex(12)
    port = free_port()
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        for path in (root, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    try:
        _as_postgres(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"]
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=200"
        _as_postgres(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w",
             "-t", "60", "start"]
        )  # fmt: skip
        psql = [
            str(bindir / "psql"),
            "-h",
            str(sockets),
            "-p",
            str(port),
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        _as_postgres([*psql, "-c", f"CREATE ROLE tuner LOGIN PASSWORD '{password}'"])
        _as_postgres([*psql, "-c", "CREATE DATABASE tuner OWNER tuner"])
        yield f"postgresql+psycopg://tuner:{password}@127.0.0.1:{port}/tuner"
    finally:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open sessions, stop.
        stop_pid(_read_pid(data / "postmaster.pid"), sig=signal.SIGINT)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- SLURM

_SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")

SLURM_CONF = """\
ClusterName=tuner
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=60
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
# FORCE: jobs share the two CPUs, as workers waiting on a study mostly sleep.
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def slurm_available() -> str | None:
    """Why a SLURM cluster cannot run here, or None if it can."""
    missing = [b for b in _SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing; run scripts/ci/setup-slurm.sh)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs"
    return None


@contextlib.contextmanager
def slurm_cluster() -> Iterator[dict[str, str]]:
    """A one-node SLURM cluster (this host, 2 CPUs); yields the environment for its clients.

    munged, slurmctld and slurmd run from a temporary directory with their own socket,
    ports and state; on exit the jobs are cancelled and the daemons stopped by PID.
    """
    reason = slurm_available()
    if reason:
        raise ServiceUnavailable(reason)
    root = Path(tempfile.mkdtemp(prefix="tuner-slurm-"))
    root.chmod(0o755)
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    key = root / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    host = socket.gethostname()
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=host, root=root, ctld_port=free_port(), d_port=free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pids: list[Path] = []
    try:
        subprocess.run(
            ["munged", "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
             f"--log-file={root}/munged.log", f"--pid-file={root}/munged.pid", f"--seed-file={root}/munged.seed"],
            check=True, capture_output=True,
        )  # fmt: skip
        pids.append(root / "munged.pid")
        subprocess.run(["slurmctld", "-i"], env=env, check=True, capture_output=True)
        pids.append(root / "slurmctld.pid")
        subprocess.run(["slurmd", "-N", host], env=env, check=True, capture_output=True)
        pids.append(root / "slurmd.pid")
        _wait_idle(env, root)
        yield {"SLURM_CONF": str(conf)}
    finally:
        _cancel_all(env)
        for pid_file in reversed(pids):
            stop_pid(_read_pid(pid_file))
        shutil.rmtree(root, ignore_errors=True)


def _wait_idle(env: dict[str, str], root: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        state = result.stdout.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    log = (root / "slurmctld.log").read_text()[-2000:] if (root / "slurmctld.log").exists() else ""
    raise ServiceUnavailable(
        f"the SLURM node never became idle (state {state!r}); slurmctld.log ends:\n{log}"
    )


def _cancel_all(env: dict[str, str], timeout: float = 60) -> None:
    """Cancels every job of the test cluster and waits until the queue is empty."""
    if not Path(env["SLURM_CONF"]).exists():
        return
    jobs = subprocess.run(
        ["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True
    ).stdout.split()
    if not jobs:
        return
    subprocess.run(["scancel", *jobs], env=env, capture_output=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not subprocess.run(
            ["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True
        ).stdout.strip():
            return
        time.sleep(0.5)
