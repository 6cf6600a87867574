"""Checks run before a study creates anything: imports, files, services, memory.

A bad value found here costs the person one line and nothing to clean up; found after
the study and its MLflow experiment exist, it would leave them half made.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf
from torch import nn

from tuner.errors import UserError
from tuner.secrets import mask_secrets
from tuner.tracking.health import PROBE_TIMEOUT, probe_server

_EXAMPLE_DB = "e.g. postgresql+psycopg://user@127.0.0.1:5432/tuner or sqlite:///runs/optuna.db"


def check_targets(cfg: DictConfig) -> None:
    """Every ``_target_`` of the data and model configs must import."""
    for group in ("data", "model"):
        target = OmegaConf.select(cfg, f"{group}._target_")
        if not target:
            raise UserError(f"{group}._target_", target, "name a class, e.g. tuner.models.MLP")
        module_name, _, attr = str(target).rpartition(".")
        try:
            getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UserError(
                f"{group}._target_",
                target,
                f"cannot import it ({type(exc).__name__}: {exc}); check the dotted path and that "
                "its folder is on PYTHONPATH",
            ) from None


def check_data(cfg: DictConfig) -> None:
    """A data config that reads a file must name a file that holds a usable data set.

    The file is read and checked here, before anything is made (see ``read_data_file``).
    """
    path = OmegaConf.select(cfg, "data.path", default=None)
    if path is None:
        return
    from tuner.data._file import check_data_file, read_data_file

    file = Path(str(path)).expanduser()
    if OmegaConf.select(cfg, "data._target_") not in ("tuner.data.ArrayFile", "tuner.data._file.ArrayFile"):
        check_data_file(file)  # another data module reads it its own way
        return
    keys = {k: cfg.data[k] for k in ("x_key", "y_key", "label", "test_fraction") if k in cfg.data}
    read_data_file(file, **keys)


def check_services(cfg: DictConfig) -> None:
    """The study storage and the MLflow store must be reachable and writable.

    Checked without creating anything but the folders the study would make: no tables,
    no files, no experiment.
    """
    _check_root(cfg)
    backend = str(cfg.storage.backend)
    if backend == "journal":
        _check_writable("storage.path", Path(str(cfg.storage.path)))
    elif backend == "rdb":
        _check_database("storage.url", str(cfg.storage.url))
    uri = cfg.tracking.uri
    if not uri:
        _check_writable("paths.root", Path(str(cfg.paths.root)) / "mlflow.db")
    else:
        check_tracking_uri(str(uri))


def check_tracking_uri(uri: str) -> None:
    """An MLflow tracking URI names a store this process can reach."""
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme in ("http", "https"):
        reason = probe_server(uri)
        if reason is not None:
            raise UserError(
                "tracking.uri",
                mask_secrets(uri),
                f"no MLflow server answers there ({reason}); start it "
                "(mlflow server --host 127.0.0.1 --port 5000) or set tracking.uri=null for the local store",
            )
    elif scheme in ("postgresql", "mysql", "mssql", "sqlite"):
        _check_database("tracking.uri", uri)
    elif scheme == "file" or (scheme == "" and uri):
        _check_writable("tracking.uri", Path(urlparse(uri).path if scheme else uri))
    elif scheme not in ("databricks", "databricks-uc", "uc"):
        raise UserError(
            "tracking.uri",
            mask_secrets(uri),
            "unknown scheme; use http://host:port (an MLflow server), sqlite:///path, "
            "postgresql://..., a folder, or null for the local store",
        )


def _check_root(cfg: DictConfig) -> None:
    """``paths.root`` is a folder, or can be made; blamed on ``TUNER_HOME`` when it comes from there."""
    root = Path(str(cfg.paths.root)).expanduser().absolute()
    home = os.environ.get("TUNER_HOME")
    key = "TUNER_HOME" if home and Path(home).expanduser().absolute() == root else "paths.root"
    if root.exists() and not root.is_dir():
        raise UserError(key, str(root), "this is a file; give a folder (it is made if missing)")
    _check_writable(key, root)


def _check_writable(key: str, path: Path, *, shown: str | None = None) -> None:
    """``path`` is a writable file or folder, or could be created there.

    Nothing is made: a command refused here (a dead tracking server, say) must leave no
    empty ``runs/`` behind. The nearest folder that exists must take a file.
    """
    path = path.expanduser().absolute()
    shown = shown or str(path)
    if path.exists():
        if path.is_dir() and key not in ("tracking.uri", "paths.root", "TUNER_HOME"):
            raise UserError(key, shown, "this is a folder; give a file path")
        if not os.access(path, os.W_OK):
            raise UserError(key, shown, "not writable; choose a path you can write to")
        return
    existing = next(p for p in path.parents if p.exists())
    if not existing.is_dir():
        raise UserError(key, shown, f"{existing} is a file, not a folder; choose another path")
    try:
        # access() says yes to root everywhere; writing a file is the real test.
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UserError(
            key, shown, f"cannot be created ({exc.strerror or exc}); choose a path you can write to"
        ) from None


def _check_database(key: str, url: str) -> None:
    """A database URL that parses, whose driver is installed and whose server answers."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    from sqlalchemy.pool import NullPool

    shown = mask_secrets(url)
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                _check_writable(key, Path(parsed.database), shown=shown)
            return
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = int(PROBE_TIMEOUT)
        engine = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    except ArgumentError:
        raise UserError(key, shown, f"not a database URL; {_EXAMPLE_DB}") from None
    except NoSuchModuleError:
        raise UserError(key, shown, f"unknown database kind; {_EXAMPLE_DB}") from None
    except ImportError as exc:
        extra = " (pip install 'tuner[postgres]')" if parsed.get_backend_name() == "postgresql" else ""
        raise UserError(key, shown, f"its driver {exc.name} is not installed; install it{extra}") from None
    try:
        with engine.connect():
            pass
    except Exception as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise UserError(
            key,
            shown,
            f"cannot connect ({mask_secrets(cause[0] if cause else type(exc).__name__)}); "
            "check the URL and that the server is up",
        ) from None
    finally:
        engine.dispose()


def check_first_batch(cfg: DictConfig, model: nn.Module, datamodule: Any) -> None:
    """The model takes a few rows of the first training batch and gives one score per class.

    A dtype or shape that does not fit (floats into an embedding, a token id past its
    table, a wrong input length) would otherwise fail or mislead every trial alike.

    Raises:
        UserError: naming the model, the batch's dtype and shape, and what went wrong.
    """
    import torch

    batch = next(iter(datamodule.train_dataloader()), None)
    if not isinstance(batch, (tuple, list)) or len(batch) != 2 or not all(torch.is_tensor(t) for t in batch):
        return  # a data module of the person's own, with batches of another form
    x = batch[0][:4]
    seen = f"the first batch (x {str(x.dtype).removeprefix('torch.')} {tuple(x.shape)})"
    target = str(cfg.model._target_)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        raise UserError(
            "model",
            target,
            f"fails on {seen} of data={cfg.data.get('name')}: {type(exc).__name__}: {lines[0] if lines else ''}",
        ) from None
    finally:
        model.train(was_training)
    if not torch.is_tensor(out) or out.ndim != 2 or out.shape[0] != len(x):
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise UserError(
            "model", target, f"gives {shape} for {seen}; return class scores of shape (batch, classes)"
        )
    classes = int(getattr(datamodule, "num_classes", 0) or 0)
    if classes and out.shape[1] < classes:
        raise UserError(
            "model",
            target,
            f"gives {out.shape[1]} class scores but the labels of data={cfg.data.get('name')} go up to {classes - 1}",
        )


def check_population(cfg: DictConfig, model: nn.Module) -> None:
    """``study.population`` copies of the model must fit in the memory at hand.

    Counts weights, gradients and two optimizer moments per copy (a lower bound:
    activations come on top), against free GPU memory or available RAM.
    """
    size = OmegaConf.select(cfg, "study.population", default=None)
    if isinstance(size, DictConfig):
        size = size.get("size")
    if size is None or size == "auto":
        return
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise UserError("study.population", size, "give a whole number >= 1, or auto")
    per_copy = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    free, where = _free_memory(cfg)
    if per_copy * size > free:
        raise UserError(
            "study.population",
            size,
            f"{size} copies need at least {_gib(per_copy * size)} (weights, gradients, optimizer state; "
            f"{_gib(per_copy)} each) and {where} has {_gib(free)} free; use at most "
            f"study.population={max(free // max(per_copy, 1), 1)} or study.population=auto",
        )


def _free_memory(cfg: DictConfig) -> tuple[int, str]:
    import torch

    if str(cfg.trainer.accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0]), "the GPU"
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "this machine"
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "this machine"


def _gib(size: int) -> str:
    return f"{size / 2**30:.3g} GiB"
