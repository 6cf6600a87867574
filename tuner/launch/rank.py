"""A DDP rank above 0 (``python -m tuner.launch.rank <config> <role>``), started by ``tuner.training.ddp.ranks``.

It runs a trial or a range test in step with rank 0. It sits above both the trial's
training and the range test, which both start ranks through ``tuner.training.ddp``.
"""

from __future__ import annotations

import os
import signal
import sys

import torch
from omegaconf import DictConfig, OmegaConf

from tuner.errors import UserError
from tuner.training.ddp import leave_group


def rank_main(path: str, role: str = "trial") -> int:
    """A rank above 0: runs the ``role`` (trial or range test) of the config at ``path`` in step with rank 0."""
    from tuner._quiet import quiet_libraries
    from tuner.data.factory import build_datamodule
    from tuner.training.trial import run_trial

    quiet_libraries()
    # Ctrl-C reaches every process of the terminal; rank 0 decides for all of them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    try:
        if role == "find":
            from tuner.finder.run import find

            find(cfg, echo=lambda _line: None)
        else:
            run_trial(cfg, build_datamodule(cfg), trial=None, run=None)
        leave_group()
    except KeyboardInterrupt:
        return 130
    except UserError as error:  # one line, as rank 0 would print it; rank 0 then stops the study
        print(f"error (rank {os.environ.get('RANK')}): {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    from tuner._exit import exit_now
    from tuner.secrets import masked_output

    with masked_output():
        code = rank_main(*sys.argv[1:3])
    exit_now(code)
