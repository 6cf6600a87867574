"""``python -m tuner [overrides]``: compose the config, check it, run the chosen mode.

Configs are composed with Hydra's compose API rather than ``@hydra.main`` so that every
user error, Hydra's own included, ends as one line naming the key and the fix (exit 2),
and so that the Optuna loop, not a Hydra sweeper, runs the trials.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from tuner.config.compose import compose
from tuner.config.path import CONFIG_DIR_ENV
from tuner.config.path import config_dir as config_dir  # for existing imports (tests, scripts)
from tuner.errors import INTERRUPTED, StudyStopped, UserError, as_user_error
from tuner.secrets import mask_secrets, masked_output, masked_yaml

if TYPE_CHECKING:
    from tuner.launch.spawn import Workers
    from tuner.search.space import ParamSpec

FLAGS = ("--debug", "--quiet", "--cfg", "--help")
_CFG_PARTS = ("job", "hydra", "all")
USAGE = """usage: python -m tuner [--debug] [--quiet] [--cfg] [--config-dir DIR] [--config-name NAME]
                       [key=value ...] [group=option ...]

Runs a learning-rate study (mode=tune, the default), the LR range test (mode=find),
a schedule plot (mode=schedule) or a report (mode=report), configured by Hydra overrides:
  python -m tuner model=mlp optimizer=sgd schedule=warmup_cosine study.n_trials=40
  python -m tuner search.params.lr.low=1e-5 trainer.max_steps=2000 study.name=my-study
Options:
  --cfg     print the composed config and exit
  --quiet   print only the start and the final table
  --debug   show the full traceback of an error
  --config-dir DIR, -cd DIR
            a config folder of your own: its groups extend the package's
            (DIR/search/my_space.yaml is search=my_space)
  --config-name NAME, -cn NAME
            the primary config (default: config, the package's); yours may list
            `- config` in its defaults to start from the package's
"""

#: Flags that take a value, long and short (Hydra's spelling).
_VALUE_FLAGS = {
    "--config-dir": "config_dir",
    "-cd": "config_dir",
    "--config-name": "config_name",
    "-cn": "config_name",
}


def split_args(args: list[str]) -> tuple[set[str], list[str]]:
    """The ``--flags`` and the overrides of a command line.

    ``--cfg job`` (Hydra's spelling, which also takes ``hydra`` and ``all``) is read as
    ``--cfg``: the word after it is not an override.
    """
    flags: set[str] = set()
    overrides: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith("--") or (arg == "-h"):
            flags.add("--help" if arg == "-h" else arg)
        elif arg in _CFG_PARTS and i > 0 and args[i - 1] == "--cfg":
            continue
        else:
            overrides.append(arg)
    return flags, overrides


def check_config_dir(folder: str) -> Path:
    """The absolute path of a ``--config-dir`` folder.

    Raises:
        UserError: the folder does not exist.
    """
    path = Path(folder).expanduser().absolute()
    if not path.is_dir():
        raise UserError(
            "--config-dir", folder, f"no such folder ({path}); give the folder that holds your config groups"
        )
    return path


def _run(cfg: DictConfig, *, quiet: bool) -> int:
    from tuner.launch.spawn import abandon, prestart

    # Local workers import torch and Lightning while this process validates the config.
    early = prestart(cfg)
    try:
        return _run_mode(cfg, quiet=quiet, workers=early)
    finally:
        if early is not None:
            abandon(early)  # nothing to do once the study has them


def check_config(cfg: DictConfig) -> list[ParamSpec]:
    """Every check of the config alone that its mode makes before touching a file or a
    service; returns the search space.

    Raises:
        UserError: naming the first bad key.
    """
    from tuner.validate import validate

    specs = validate(cfg)
    if cfg.mode == "tune":
        from tuner.launch import check

        check(cfg)
    elif cfg.mode == "find":
        from tuner.training import ddp

        ddp.check(cfg)
    return specs


def _run_mode(cfg: DictConfig, *, quiet: bool, workers: Workers | None) -> int:
    specs = check_config(cfg)
    if cfg.mode == "tune":
        from tuner.launch import launch
        from tuner.report import study_report
        from tuner.study.loop import study_tables, tune
        from tuner.study.progress import StudyProgress, best_table, print_table

        if cfg.launcher.name == "none":
            with StudyProgress(quiet=quiet) as progress:
                result = tune(cfg, specs, progress=progress, write_report=study_report)
        else:
            launched = launch(cfg, specs, quiet=quiet, workers=workers)
            if launched is None:
                return 0
            result = launched
        print_table(best_table(result.study, top=int(cfg.study.show_top), metric=str(cfg.study.metric)))
        for table in study_tables(cfg, specs, result.study):
            print_table(table)
        if result.stopped_because:
            print(f"stopped early: {result.stopped_because}")
        if result.report:
            print(f"Report and plots: {result.report} (and .html beside it)")
        _print_ui(result.tracking_uri, result.experiment_id)
        if result.fault:
            print(f"stopped: {result.fault}", file=sys.stderr)
            return 3
        return 0
    if cfg.mode == "report":
        return _report(cfg)
    if cfg.mode == "schedule":
        from tuner.schedule.plot import draw_schedule, print_schedule

        print_schedule(cfg, *draw_schedule(cfg))
        return 0
    if cfg.mode == "find":
        from tuner.finder.run import find
        from tuner.training import ddp

        with ddp.ranks(cfg, role="find"):
            find(cfg)
        return 0
    raise UserError("mode", cfg.mode, "this mode is not available yet")


def _print_ui(tracking_uri: str, experiment_id: str) -> None:
    """How to open the study's runs table in the MLflow UI."""
    from tuner.tracking.tracker import MLFLOW_UI, runs_page

    print("Compare the trials in the MLflow UI:")
    uri = mask_secrets(tracking_uri)
    if uri.startswith(("http:", "https:")):
        print(f"  open {runs_page(uri, experiment_id) if experiment_id else uri}")
        return
    print(f"  mlflow ui --backend-store-uri {uri}")
    if experiment_id:
        print(f"  then open {runs_page(MLFLOW_UI, experiment_id)}")


def _report(cfg: DictConfig) -> int:
    """``mode=report``: plots and report of a finished or running study, from its stores."""
    from mlflow.tracking import MlflowClient

    from tuner.report.build import load_for_report, write_report
    from tuner.tracking.tracker import tracking_uri

    study = load_for_report(cfg)
    report = write_report(cfg, study, client=MlflowClient(tracking_uri=tracking_uri(cfg)))
    if report.basin is not None:
        b = report.basin
        print(f"recommended {b.param}: {b.recommended:.3g} (robust range {b.low:.3g} - {b.high:.3g})")
    print(f"report: {report.markdown}")
    print(f"        {report.html}")
    return 0


def main(argv: list[str] | None = None, *, check_only: bool = False) -> int:
    """Entry point of ``python -m tuner`` and the ``tuner`` script; returns the exit code.

    Everything it prints or logs is masked (``tuner.secrets.masked_output``).

    Args:
        argv: The command line (``sys.argv[1:]`` when None).
        check_only: Stop after the checks of the command line and the config
            (:func:`check_config`), before any file or service is touched: the
            command-line fuzz test runs hundreds of commands this way.
    """
    with masked_output():
        return _main(argv, check_only=check_only)


def _main(argv: list[str] | None, *, check_only: bool) -> int:
    values, args = _value_flags(list(sys.argv[1:] if argv is None else argv))
    if values is None:  # --config-dir or --config-name without its value
        print(USAGE, file=sys.stderr)
        return 2
    flags, overrides = split_args(args)
    debug = "--debug" in flags or os.environ.get("TUNER_DEBUG") == "1"
    unknown = sorted(flags - set(FLAGS))
    if unknown:
        shown = mask_secrets(unknown[0])
        print(
            f"error: {shown}: unknown option; use {', '.join(FLAGS)}, --config-dir, --config-name "
            "(see python -m tuner --help)",
            file=sys.stderr,
        )
        return 2
    if "--help" in flags:
        print(USAGE)
        return 0
    try:
        with _user_dir_in_env(values.get("config_dir")):
            return _command(
                flags,
                overrides,
                config_name=values.get("config_name") or "config",
                debug=debug,
                check_only=check_only,
            )
    except UserError as error:
        print(f"error: {mask_secrets(str(error))}", file=sys.stderr)
        return 2


def _value_flags(args: list[str]) -> tuple[dict[str, str] | None, list[str]]:
    """Takes ``--config-dir DIR`` (``-cd``, ``--config-dir=DIR``) and ``--config-name`` out of ``args``.

    Returns None for the values when a flag lacks its value.
    """
    values: dict[str, str] = {}
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        flag, eq, value = arg.partition("=")
        if flag not in _VALUE_FLAGS:
            rest.append(arg)
            continue
        value = value if eq else next(it, "")
        if not value:
            return None, rest
        values[_VALUE_FLAGS[flag]] = value
    return values, rest


@contextlib.contextmanager
def _user_dir_in_env(folder: str | None) -> Iterator[None]:
    """Puts the ``--config-dir`` folder where composing, workers and DDP ranks all read it."""
    if folder is None:
        yield
        return
    before = os.environ.get(CONFIG_DIR_ENV)
    os.environ[CONFIG_DIR_ENV] = str(check_config_dir(folder))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CONFIG_DIR_ENV, None)
        else:
            os.environ[CONFIG_DIR_ENV] = before


def _command(
    flags: set[str], overrides: list[str], *, config_name: str, debug: bool, check_only: bool
) -> int:
    from tuner._quiet import quiet_libraries

    quiet_libraries()
    try:
        cfg = compose(overrides, config_name=config_name)
        if "--cfg" in flags:
            print(masked_yaml(cfg))
            return 0
        if check_only:
            check_config(cfg)
            return 0
        return _run(cfg, quiet="--quiet" in flags)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except StudyStopped as exc:
        if debug:
            print(mask_secrets(traceback.format_exc()), file=sys.stderr)
        print(f"stopped: {mask_secrets(str(exc))}", file=sys.stderr)
        return 3
    except Exception as exc:
        error = as_user_error(exc)
        if error is None:
            # A bug, not bad input: the traceback, with any password in it masked.
            print(mask_secrets(traceback.format_exc()), file=sys.stderr)
            return 1
        if debug:
            print(mask_secrets(traceback.format_exc()), file=sys.stderr)
        print(f"error: {mask_secrets(str(error))}", file=sys.stderr)
        return 2
