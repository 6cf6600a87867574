"""Which devices and how many threads each local worker gets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from tuner.devices import cpu_cores, world_size
from tuner.errors import UserError


@dataclass(frozen=True)
class WorkerPlan:
    """One local worker: its GPUs (``CUDA_VISIBLE_DEVICES``) and its CPU threads."""

    index: int
    gpus: tuple[str, ...] | None
    threads: int

    def env(self) -> dict[str, str]:
        """Environment variables that pin the worker to its share of the machine."""
        threads = str(self.threads)
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        return env


def _gpu_devices() -> bool:
    """Whether this machine has GPU device files (NVIDIA, or AMD's ROCm).

    Asked before torch is imported: a launcher on a CPU machine starts its workers
    without the seconds that importing torch costs.
    """
    if not Path("/dev").is_dir():
        return True  # not Linux: let torch tell
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/kfd").exists()


def visible_gpus(accelerator: str) -> list[str]:
    """GPU ids a worker may be given: none when trials run on the CPU."""
    if accelerator == "cpu" or not _gpu_devices():
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [g.strip() for g in listed.split(",") if g.strip()] if listed else [str(i) for i in range(count)]
    return ids[:count]


# long: GPU and CPU placement in one pass, each with its own checks and messages
def plan_workers(
    workers: int | None,
    *,
    gpus: list[str],
    cores: int,
    gpus_per_worker: int,
    trials_per_gpu: int,
    threads_per_worker: int | None,
    max_threads: int | None,
    devices_per_trial: int = 1,
) -> list[WorkerPlan]:
    """Spreads workers over GPUs (packing ``trials_per_gpu`` on each) or over CPU cores.

    With GPUs, worker ``i`` gets GPU slot ``i // trials_per_gpu``, a slot being
    ``gpus_per_worker`` consecutive GPUs. Each worker gets ``threads_per_worker``
    threads if given, else the cores divided among the workers (at least one, at most
    ``max_threads``).

    Raises:
        UserError: more workers than the GPU slots hold, inconsistent packing, or a
            worker's GPUs that its trials (``devices_per_trial``) would not all use.
    """
    if gpus_per_worker < 1:
        raise UserError("launcher.gpus_per_worker", gpus_per_worker, "give 1 or more")
    if trials_per_gpu < 1:
        raise UserError("launcher.trials_per_gpu", trials_per_gpu, "give 1 or more")
    if trials_per_gpu > 1 and gpus_per_worker > 1:
        raise UserError(
            "launcher.trials_per_gpu",
            trials_per_gpu,
            "packing shares one GPU among workers: use it with launcher.gpus_per_worker=1",
        )
    if gpus and devices_per_trial != gpus_per_worker:
        # Fewer would leave a worker's GPUs idle; more, every trial fails to find its devices.
        raise UserError(
            "launcher.gpus_per_worker",
            gpus_per_worker,
            f"each worker gets {gpus_per_worker} GPU(s) but a trial trains on trainer.devices="
            f"{devices_per_trial}: give both the same N (with trainer.strategy=ddp when N > 1)",
        )
    slots = len(gpus) // gpus_per_worker
    if gpus and slots == 0:
        raise UserError(
            "launcher.gpus_per_worker",
            gpus_per_worker,
            f"only {len(gpus)} GPU(s) here; give at most {len(gpus)}",
        )
    capacity = slots * trials_per_gpu if gpus else cores
    count = capacity if workers is None else workers
    if count < 1:
        raise UserError("launcher.workers", workers, "give 1 or more workers")
    if gpus and count > capacity:
        raise UserError(
            "launcher.workers",
            workers,
            f"{len(gpus)} GPU(s) / gpus_per_worker={gpus_per_worker} x trials_per_gpu={trials_per_gpu} "
            f"hold {capacity} workers; lower launcher.workers or raise launcher.trials_per_gpu",
        )
    threads = threads_per_worker or max(1, cores // count)
    if max_threads and not threads_per_worker:
        threads = min(threads, max_threads)
    plans = []
    for index in range(count):
        chosen = None
        if gpus:
            slot = index // trials_per_gpu
            chosen = tuple(gpus[slot * gpus_per_worker : (slot + 1) * gpus_per_worker])
        plans.append(WorkerPlan(index, chosen, threads))
    return plans


def plan_local(cfg: DictConfig) -> list[WorkerPlan]:
    """The plan for ``launcher=local`` on this machine."""
    launcher = cfg.launcher
    workers = launcher.get("workers")
    return plan_workers(
        None if workers is None else int(workers),
        gpus=visible_gpus(str(cfg.trainer.accelerator)),
        cores=cpu_cores(),
        gpus_per_worker=int(launcher.gpus_per_worker),
        trials_per_gpu=int(launcher.trials_per_gpu),
        threads_per_worker=int(launcher.threads_per_worker) if launcher.get("threads_per_worker") else None,
        max_threads=int(cfg.trainer.num_threads) if cfg.trainer.get("num_threads") else None,
        devices_per_trial=world_size(cfg),
    )
