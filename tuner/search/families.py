"""Optimizer and schedule families chosen by the search.

A search space may sample ``optimizer.name`` or ``schedule.name``. The base config then
describes one family (say adam) while a trial trains another (sgd) whose own keys
(momentum, nesterov) the base config lacks. A trial of another family than the base
config's gets a section made of:

* the keys every family of the section shares, from the base config, so fixed settings
  and command-line overrides hold whatever family is drawn: ``lr``, ``weight_decay`` and
  ``decay_norm_and_bias`` of the optimizer; the warmup keys and ``min_lr_ratio`` of the
  schedule;
* the family's own keys from its option file ``conf/<section>/<family>.yaml``, exactly
  as ``optimizer=<family>`` would set them (momentum 0.9 for sgd, rho 0.9 for adadelta);
* nothing else: the base family's own keys (and an ``optimizer._target_``) are dropped,
  so the trial's ``trial_config.yaml`` shows what trained.

Sampled values are written afterwards and win. :mod:`tuner.search.check` rejects, before
anything is created, a parameter that would write a key its family does not have, and
any choice or bound that makes an invalid trial config.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tuner.errors import UserError
from tuner.optimizer.factory import COMMON_KEYS, OPTIMIZER_KEYS, OPTIMIZERS
from tuner.schedule.functions import COMMON_DEFAULTS, FAMILY_DEFAULTS, SCHEDULES


@dataclass(frozen=True)
class Section:
    """What the search needs to know about one config section with families.

    Attributes:
        families: The family names ``<section>.name`` may take.
        shared: Keys every family has; a family switch keeps the base config's values.
        own: Family -> the keys only some families have.
    """

    families: tuple[str, ...]
    shared: frozenset[str]
    own: Mapping[str, frozenset[str]]

    def knows(self, key: str) -> bool:
        return key == "name" or key in self.shared or any(key in keys for keys in self.own.values())


SECTIONS: dict[str, Section] = {
    "optimizer": Section(OPTIMIZERS, COMMON_KEYS - {"name", "_target_"}, OPTIMIZER_KEYS),
    "schedule": Section(
        SCHEDULES,
        frozenset(COMMON_DEFAULTS),
        {name: frozenset(defaults) for name, defaults in FAMILY_DEFAULTS.items()},
    ),
}


def split_path(path: str) -> tuple[str, str]:
    """``optimizer.betas.0`` -> (``optimizer``, ``betas``)."""
    section, _, rest = path.partition(".")
    return section, rest.split(".")[0]


def known_path(path: str) -> bool:
    """Whether ``path`` is a key some family of its section has (it may be absent from the base)."""
    section, key = split_path(path)
    return section in SECTIONS and SECTIONS[section].knows(key)


def option_values(section: str, family: str) -> dict[str, Any]:
    """The keys ``<section>=<family>`` sets: its option file ``conf/<section>/<family>.yaml``.

    Raises:
        UserError: ``family`` is not a family of the section.
    """
    return copy.deepcopy(_option_file(section, family))


@cache
def _option_file(section: str, family: str) -> dict[str, Any]:
    from tuner.config.path import config_dir

    path = config_dir() / section / f"{family}.yaml"
    if family not in SECTIONS[section].families or not path.is_file():
        raise UserError(f"{section}.name", family, f"use one of {', '.join(SECTIONS[section].families)}")
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(values, dict)
    return {str(k): v for k, v in values.items()}


def switched(section: str, base: Mapping[str, Any], family: str) -> dict[str, Any]:
    """The ``section`` config of a trial of ``family`` built on the base config's section.

    Raises:
        UserError: ``family`` is not a family of the section.
    """
    info = SECTIONS[section]
    kept = {k: v for k, v in base.items() if k in info.shared}
    return {**option_values(section, family), **kept, "name": family}


def switch_families(base: DictConfig, trial_cfg: DictConfig, family_values: Mapping[str, str]) -> None:
    """Rebuilds each section of ``trial_cfg`` whose sampled family differs from the base config's.

    Args:
        base: The composed config the study started from.
        trial_cfg: The trial's (resolved, non-struct) copy of it, changed in place.
        family_values: Section -> the family the trial samples for it.
    """
    for section, family in family_values.items():
        current = base[section]
        if family == current.get("name") and "_target_" not in current:
            continue
        base_section = OmegaConf.to_container(current, resolve=True)
        assert isinstance(base_section, dict)
        trial_cfg[section] = switched(section, {str(k): v for k, v in base_section.items()}, family)


def family_section(path: str) -> str | None:
    """The section whose family a parameter of this path chooses (``optimizer.name``), or None."""
    section, _, rest = path.partition(".")
    return section if rest == "name" and section in SECTIONS else None
