"""One trial on several devices (``trainer.devices=2 trainer.strategy=ddp``).

Lightning's own DDP launcher re-runs the command line in each new process, which would
start a whole study per rank. Here the process that runs the study loop is rank 0: for
each multi-device trial it starts ranks 1..N-1 itself (``python -m tuner.launch.rank <trial
config>``), as torchrun would, and only rank 0 talks to Optuna and MLflow. The pruning
decision and the divergence guard's verdict are shared by collective calls in the
callbacks, so every rank stops on the same step.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
from lightning_fabric.plugins.environments import LightningEnvironment
from lightning_fabric.strategies import DDPStrategy as FabricDDPStrategy
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.strategies import DDPStrategy

from tuner.devices import world_size
from tuner.errors import UserError

_DDP = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false", "auto")
#: The folder where ranks above 0 mark that they reached the process group's rendezvous.
READY_ENV = "TUNER_DDP_READY"
_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK", "RANK", READY_ENV)
#: The processes of ranks 1..N-1 that ``ranks`` started, by their ready folder.
_started: dict[str, list[subprocess.Popen[bytes]]] = {}


def check(cfg: DictConfig) -> None:
    """Rejects device settings this launcher cannot run.

    Raises:
        UserError: ``ddp_spawn`` / ``fsdp``-like strategies, or ``devices=auto`` with ddp.
    """
    strategy = str(cfg.trainer.strategy)
    if strategy not in _DDP:
        # ddp_spawn, fsdp, deepspeed...: Lightning would start the ranks itself, each
        # re-running the whole study.
        raise UserError(
            "trainer.strategy",
            strategy,
            "use auto (one device) or ddp (trainer.devices > 1; tuner starts the processes of a trial itself)",
        )
    if strategy.startswith("ddp") and str(cfg.trainer.devices) == "auto":
        raise UserError(
            "trainer.devices", "auto", "with trainer.strategy=ddp give a device count, e.g. trainer.devices=2"
        )
    if strategy.startswith("ddp") and world_size(cfg) == 1:
        raise UserError(
            "trainer.devices",
            cfg.trainer.devices,
            "trainer.strategy=ddp trains one trial on several devices: give a count above 1, "
            "e.g. trainer.devices=2 (or drop trainer.strategy)",
        )


def strategy(cfg: DictConfig) -> DDPStrategy:
    """The DDP strategy of a multi-device trial, with the processes started here.

    The cluster environment is pinned to Lightning's plain one: inside a SLURM job,
    Lightning would otherwise take the ranks from SLURM's task count (one per job).
    """
    return _TrialDDP(
        cluster_environment=LightningEnvironment(),
        find_unused_parameters=str(cfg.trainer.strategy) == "ddp_find_unused_parameters_true",
        timeout=timeout(cfg),
    )


def fabric_strategy(cfg: DictConfig) -> FabricDDPStrategy:
    """The same for Fabric (the LR range test on several devices)."""
    return _FabricDDP(cluster_environment=LightningEnvironment(), timeout=timeout(cfg))


class _TrialDDP(DDPStrategy):
    def setup_distributed(self) -> None:
        meet_ranks(self._timeout)
        super().setup_distributed()


class _FabricDDP(FabricDDPStrategy):
    def _setup_distributed(self) -> None:
        meet_ranks(self._timeout)
        super()._setup_distributed()


def meet_ranks(wait: timedelta | None) -> None:
    """Called by every rank just before it joins the process group.

    A rank above 0 marks that it got there. Rank 0 waits for those marks and gives up
    as soon as a rank's process has ended without one: joining would otherwise wait
    the whole ``trainer.ddp_timeout`` for a rank that will never come (an environment
    where ``python -m tuner.launch.rank`` cannot start, a model that fails to build there).

    Raises:
        UserError: A rank ended before the rendezvous, or never reached it in time.
    """
    folder = os.environ.get(READY_ENV)
    if not folder:
        return
    rank = int(os.environ.get("RANK") or 0)
    if rank:
        Path(folder, f"rank-{rank}").touch()
        return
    procs = _started.get(folder, [])
    world = len(procs) + 1
    deadline = time.monotonic() + (wait or timedelta(seconds=300)).total_seconds()
    waiting = set(range(1, world))
    while waiting:
        for rank in sorted(waiting):
            if Path(folder, f"rank-{rank}").exists():
                waiting.discard(rank)
            elif (code := procs[rank - 1].poll()) is not None:
                raise UserError(
                    "trainer.devices",
                    world,
                    f"rank {rank} of {world} ended (exit code {code}) before joining the others; its "
                    "output is above. Check that `python -m tuner.launch.rank` runs here, or use trainer.devices=1",
                )
        if waiting and time.monotonic() > deadline:
            raise UserError(
                "trainer.ddp_timeout",
                int(wait.total_seconds()) if wait else 300,
                f"ranks {sorted(waiting)} did not start in time; raise trainer.ddp_timeout on a slow machine",
            )
        time.sleep(0.02)


def timeout(cfg: DictConfig) -> timedelta:
    """How long a rank waits in a collective call for the others (``trainer.ddp_timeout``)."""
    return timedelta(seconds=int(cfg.trainer.get("ddp_timeout") or 300))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def ranks(cfg: DictConfig, role: str = "trial") -> Iterator[None]:
    """Starts the other ranks of a multi-device trial or range test; this process is rank 0.

    ``role`` says what the other ranks run: ``trial`` (a training run) or ``find`` (the LR
    range test). On exit the process group is torn down, so the next trial can form a new
    one, and the other ranks are waited for (killed if they hang).
    """
    n = world_size(cfg)
    if n <= 1:
        yield
        return
    env = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": str(n),
        "NODE_RANK": "0",
    }
    ready = tempfile.mkdtemp(prefix="tuner-ddp-")
    env[READY_ENV] = ready
    fd, name = tempfile.mkstemp(prefix="tuner-trial-", suffix=".yaml")
    with os.fdopen(fd, "w") as handle:
        # The other ranks never touch the study: its storage (and any password) stays out.
        handle.write(OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "storage"])))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tuner.launch.rank", name, role],
            env={**os.environ, **env, "LOCAL_RANK": str(rank), "RANK": str(rank)},
            stdout=subprocess.DEVNULL,
        )
        for rank in range(1, n)
    ]
    _started[ready] = procs
    saved = {key: os.environ.get(key) for key in _ENV}
    os.environ.update(env, LOCAL_RANK="0", RANK="0")
    try:
        yield
        leave_group()
    finally:
        # On an error the others may be inside a collective: no barrier, just go.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for rank, proc in enumerate(procs, start=1):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                print(f"ddp: rank {rank} hung after the {role} and was killed", file=sys.stderr)
            if proc.returncode not in (0, 130, -signal.SIGKILL):
                print(f"ddp: rank {rank} ended with exit code {proc.returncode}", file=sys.stderr)
        Path(name).unlink(missing_ok=True)
        _started.pop(ready, None)
        shutil.rmtree(ready, ignore_errors=True)


def leave_group() -> None:
    """Tears down this rank's process group once every rank is done with it.

    A rank that exits with the group alive aborts in gloo's threads ("terminate called
    without an active exception"); the barrier keeps a rank from tearing down while
    another still reduces.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
