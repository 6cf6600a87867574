"""A user model whose faults are scripted, for fault tests (imported as ``tests.scripted_model.Scripted``).

Each construction of the model is numbered by a file ``built-<n>`` in ``$TUNER_TEST_DIR``
(0 is the tuner's own check before the study, 1 the first trial, and so on);
``$TUNER_TEST_SCRIPT`` is a comma list of what construction n does:

- ``ok``: trains normally;
- ``raise``: raises a RuntimeError from ``forward`` after a few steps;
- ``oom``: raises ``torch.cuda.OutOfMemoryError`` the same way (CUDA out of memory, on CPU);
- ``nan``: returns NaN outputs, so the loss is NaN;
- ``leak``: raises a ConnectionError quoting a database URL with a password (``LEAK_URL``),
  as a model reading features from a database would.
- ``crash``: the process dies of SIGSEGV after a few steps (a native crash, nothing to catch).

If a file ``hold-<n>`` exists, construction n waits for ``go-<n>``: a test can act
(stop a server) at a known point of the study.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch
from torch import nn

#: Secrets that must never leave the process unmasked: an '@' inside the password, a token pair.
LEAK_PASSWORD = "s3cret@PW9"
LEAK_TOKEN = "tok-5f2a9"
LEAK_URL = f"postgresql://bob:{LEAK_PASSWORD}@db.example:5432/feat?sslmode=require&token={LEAK_TOKEN}"


def _number(folder: Path) -> int:
    n = len(list(folder.glob("built-*")))
    (folder / f"built-{n}").touch()
    return n


class Scripted(nn.Module):
    """A small MLP that misbehaves as scripted (see the module's docstring)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, fail_after: int = 8) -> None:
        super().__init__()
        folder = Path(os.environ["TUNER_TEST_DIR"])
        n = _number(folder)
        script = os.environ.get("TUNER_TEST_SCRIPT", "").split(",")
        self.mode = script[n] if n < len(script) and script[n] else "ok"
        self.fail_after = fail_after
        self.calls = 0
        if (folder / f"hold-{n}").exists():
            deadline = time.monotonic() + 300
            while not (folder / f"go-{n}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        width = 1
        for dim in input_shape:
            width *= dim
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(width, 32), nn.Tanh(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        out = self.body(x)
        if self.calls > self.fail_after:
            if self.mode == "raise":
                raise RuntimeError("boom in user code")
            if self.mode == "leak":
                raise ConnectionError(f"could not reach {LEAK_URL}")
            if self.mode == "oom":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if self.mode == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)
        if self.mode == "nan":
            return out * float("nan")
        return out


class RankZeroOnly(nn.Module):
    """A small MLP that only rank 0 can build: a DDP rank above 0 fails before the rendezvous."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if os.environ.get("RANK", "0") != "0":
            raise RuntimeError(f"this model cannot be built on rank {os.environ['RANK']}")
        width = 1
        for dim in input_shape:
            width *= dim
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
