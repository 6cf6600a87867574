"""The validation curve of one trial config: every evaluation's val_acc and val_loss.

Used to show the delayed generalisation of ``modadd-transformer`` (validation accuracy
flat, then a jump); any task's config works.

    python scripts/bench/val_curve.py data=modadd model=transformer optimizer=adamw \\
        optimizer.lr=0.01 optimizer.weight_decay=1.0 'optimizer.betas=[0.9,0.98]' \\
        schedule=constant trainer.max_steps=2000 trainer.val_check_interval=100
"""

from __future__ import annotations

import sys
import time
from typing import Any


class _Printer:
    """Stands in for a trial's tracking run: prints each evaluation, drops the step log."""

    def log_steps(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        shown = {k: round(float(v), 3) for k, v in metrics.items() if k in ("val_acc", "val_loss")}
        print(step, shown, flush=True)


def main(overrides: list[str]) -> None:
    import torch

    from tuner._quiet import quiet_libraries
    from tuner.cli import compose
    from tuner.data.factory import build_datamodule
    from tuner.training.trial import run_trial

    torch.set_num_threads(1)
    quiet_libraries()
    cfg = compose([*overrides, "storage=memory", "trainer.num_threads=1"])
    started = time.monotonic()
    out = run_trial(cfg, build_datamodule(cfg), trial=None, run=_Printer())  # type: ignore[arg-type]
    print(out.state, out.value, out.metrics, f"{time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
