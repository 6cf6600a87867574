"""Composing the config with Hydra: the package's ``conf/`` tree, the person's ``--config-dir``
folder and the overrides, with Hydra's errors turned into one-line ``UserError`` messages.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tuner.config.nodes import config_hash
from tuner.config.path import config_dir, user_config_dir
from tuner.errors import UserError


def _initialize(user_dir: Path | None) -> None:
    """Starts Hydra on the package's configs, then the person's folder, as Hydra's own ``--config-dir``.

    The folder comes after the package's, so its groups add options and never shadow a
    built-in one; a primary config of its own is found by ``--config-name``.
    """
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.version import setbase

    GlobalHydra.instance().clear()
    setbase("1.3")
    search_path = create_config_search_path(str(config_dir()))
    if user_dir is not None:
        search_path.prepend(
            provider="command-line", path=f"file://{user_dir}", anchor=SearchPathQuery(provider="schema")
        )
    Hydra.create_main_hydra2(task_name="tuner", config_search_path=search_path)


def compose(overrides: list[str], *, config_name: str = "config") -> DictConfig:
    """The composed config for these overrides, with the study named.

    The person's ``--config-dir`` folder, if any, is read from :data:`CONFIG_DIR_ENV`.

    Raises:
        UserError: an unknown group option, a misspelled key, a bad override.
    """
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        _initialize(user_config_dir())
        cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise _compose_error(exc, overrides, config_name) from None
    except ValueError as exc:  # Hydra's own for a group option that is a number or null
        raise _group_error(overrides) or exc from None
    finally:
        GlobalHydra.instance().clear()
    choices = dict(cfg.hydra.runtime.choices)
    with _open(cfg):
        del cfg["hydra"]
        if not cfg.study.name:
            digest = config_hash(cfg, "data", "model", "optimizer", "schedule", "search", "trainer", "seed")
            cfg.study.name = f"{choices.get('model', 'model')}-{choices.get('data', 'data')}-{digest}"
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "config"
        raise UserError(
            str(key), None, f"cannot resolve ({exc.msg if hasattr(exc, 'msg') else exc})"
        ) from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(missing[0], "???", f"this value is required: pass {missing[0]}=...")
    return cfg


class _open:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def __enter__(self) -> None:
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc: object) -> None:
        OmegaConf.set_struct(self.cfg, True)


def _compose_error(exc: Exception, overrides: list[str], config_name: str = "config") -> UserError:
    from hydra.errors import OverrideParseException

    if isinstance(exc, OverrideParseException):
        return _unreadable_override(overrides) or UserError("overrides", " ".join(overrides), str(exc))
    text = str(exc)
    if f"Cannot find primary config '{config_name}'" in text:
        return UserError(
            "--config-name",
            config_name,
            "no such config in the package or --config-dir; give a file name without .yaml",
        )
    group = re.search(r"Could not (?:find|load) '([^']+)'", text)
    if group:
        path = group.group(1)
        key, _, option = path.rpartition("/")
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        fix = f"use one of {', '.join(options)}" if options else "check the option name"
        return UserError(key or path, option, fix)
    bad_key = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Key '([^']+)' is not in struct", text
    )
    if bad_key:
        key = bad_key.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), None)
        return UserError(
            key, value, "no such config key; check the spelling (python -m tuner --cfg lists every key)"
        )
    return UserError("overrides", " ".join(overrides), text.splitlines()[0] if text else type(exc).__name__)


def _group_error(overrides: list[str]) -> UserError | None:
    """The first ``group=option`` override whose option is not a name (``finder=0``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        key, _, option = override.partition("=")
        group = config_dir() / key.lstrip("+~")
        # Hydra reads null, true or 0 as a value, not as an option's name.
        if group.is_dir() and not isinstance(parser.parse_override(override).value(), (str, list)):
            options = sorted(p.stem for p in group.glob("*.yaml"))
            return UserError(key.lstrip("+~"), option, f"use one of {', '.join(options)}")
    return None


def _unreadable_override(overrides: list[str]) -> UserError | None:
    """The first override Hydra's grammar cannot read, with the way to write it.

    Hydra's own message is its lexer's ("LexerNoViableAltException", "mismatched input"),
    without the key: unicode, quotes, ``?`` or ``=`` in an unquoted value all end there.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException:
            key, equals, value = override.partition("=")
            if not equals:
                return UserError(
                    "override",
                    override,
                    "give key=value or group=option (python -m tuner --cfg lists every key)",
                )
            quoted = f'{key}="{value}"' if "'" in value else f"{key}='{value}'"
            return UserError(
                key,
                value,
                f"Hydra cannot read this value unquoted; quote it: {quoted} (inside the shell's own quotes)",
            )
    return None
