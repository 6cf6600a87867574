"""Keeping passwords out of what is printed, logged, stored in Optuna or sent to MLflow.

Storage and tracking URLs may carry a password (``postgresql+psycopg://user:pw@host/db``,
``http://user:pw@host:5000``), and so may any exception a model raises. Rather than mask
at each call site (one forgotten print leaks), every way out of the process goes through
:func:`mask_secrets` at one choke point:

* the console: :func:`masked_output` wraps ``sys.stdout`` / ``sys.stderr`` for the
  whole command (the progress lines, the stopped-early line, errors, warnings);
* logging: every record's message and traceback (:func:`mask_logging`);
* Optuna: a storage's user and system attributes (:func:`masked_storage`), where a
  trial's failure reason lives;
* MLflow: the tracker masks tags, params and text artifacts (``tuner.tracking.tracker``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import traceback
from collections.abc import Iterator
from functools import cache
from typing import IO, Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf

# scheme://user:password@host -- the host comes after the LAST '@' before the path, so a
# password may hold '@' (user:s3cret@PW9@host); greedy matching backtracks to that '@'.
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s'\"]*:)(?P<password>[^\s'\"/?#]*)@")
# key=value pairs whose key names a secret: libpq's "password=...", a URL's "?token=...&",
# "api_secret=..."; the value ends at a space, a quote or the next query pair.
_PAIR = re.compile(
    r"(?P<head>\b\w*(?:password|passwd|token|secret|api_key)\w*\s*=\s*)"
    r"(?P<password>'[^']*'|\"[^\"]*\"|[^\s'\"&;,]+)",
    re.IGNORECASE,
)
#: Config keys whose values are secrets in full, whatever they look like.
_SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_key)$", re.IGNORECASE)
MASK = "***"


def mask_secrets(text: str) -> str:
    """The text with every URL password and ``password=`` / ``token=`` / ``secret=`` value
    replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m.group('head')}{MASK}@", text)
    return _PAIR.sub(lambda m: f"{m.group('head')}{MASK}", text)


def mask_value(key: str, value: Any) -> Any:
    """A config value safe to show: secret-named keys hidden, URL passwords masked."""
    if value is None:
        return value
    if _SECRET_KEYS.search(key.rsplit(".", 1)[-1]):
        return MASK
    return mask_secrets(value) if isinstance(value, str) else value


def _masked_container(cfg: DictConfig) -> Any:
    container = OmegaConf.to_container(cfg, resolve=True)

    def walk(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{prefix}.{k}" if prefix else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, prefix) for v in node]
        return mask_value(prefix, node)

    return walk(container, "")


def masked_yaml(cfg: DictConfig) -> str:
    """The config as YAML, with secrets masked.

    Dumped by PyYAML's C emitter when there is one: ``OmegaConf.to_yaml`` of a whole
    trial config took 20 ms, paid for every trial.
    """
    container = _masked_container(cfg)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(
        yaml.dump(container, Dumper=dumper, default_flow_style=False, sort_keys=False, allow_unicode=True)
    )


def mask_stored(value: Any) -> Any:
    """A value to store (an Optuna attribute, JSON): its strings masked, at any depth."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: mask_stored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_stored(v) for v in value)
    return value


class _MaskedStream:
    """A text stream that masks secrets in every write, and is the stream otherwise.

    Writes are masked one at a time: ``print`` and rich write a line, a panel or a
    traceback at once, so a URL is not split across two writes.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask_secrets(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush, encoding...
        return getattr(self._stream, name)


@contextlib.contextmanager
def masked_output() -> Iterator[None]:
    """Masks secrets in everything written to stdout and stderr, and logged, meanwhile."""
    mask_logging()
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, _MaskedStream):
        sys.stdout = _MaskedStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _MaskedStream):
        sys.stderr = _MaskedStream(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = saved


@cache
def mask_logging() -> None:
    """Every log record, from this project or a library, is masked when it is made.

    A record factory sees each record once, before any handler formats it, whatever
    stream or file the handler writes to.
    """
    make = logging.getLogRecordFactory()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        with contextlib.suppress(Exception):  # a bad format is logging's to report
            record.msg, record.args = mask_secrets(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask_secrets("".join(traceback.format_exception(*record.exc_info))).rstrip("\n")
        return record

    logging.setLogRecordFactory(masked_record)


#: The storage methods that write an attribute: (id, key, value).
_ATTR_SETTERS = (
    "set_trial_user_attr",
    "set_trial_system_attr",
    "set_study_user_attr",
    "set_study_system_attr",
)


S = TypeVar("S")


def masked_storage(storage: S) -> S:
    """The same Optuna storage, whose attributes (a trial's failure reason) are masked.

    The instance's class is swapped for a subclass rather than wrapped, so that checks
    such as ``isinstance(storage, BaseHeartbeat)`` still hold.
    """
    cls: type = type(storage)
    storage.__class__ = _masked_class(cls)
    return storage


@cache
def _masked_class(cls: type) -> type:
    """A subclass of a storage class whose attribute setters mask the value.

    The storage's class comes first among the bases (a mixin before it would change the
    instance layout, and ``__class__`` could not be swapped).
    """
    if getattr(cls, "_masks_attrs", False):
        return cls

    def masking(name: str) -> Any:
        plain = getattr(cls, name)

        def setter(self: Any, owner_id: int, key: str, value: Any) -> None:
            plain(self, owner_id, key, mask_stored(value))

        return setter

    namespace: dict[str, Any] = {name: masking(name) for name in _ATTR_SETTERS}
    namespace.update(__slots__=(), __module__=cls.__module__, _masks_attrs=True)
    return type(f"Masked{cls.__name__}", (cls,), namespace)
