"""The study name, which becomes folders: checked without torch, before any folder is made.

Launchers read it before torch is imported (``tuner.launch.spawn`` makes the workers' log
folder under it), so it lives apart from the rest of the config checks.
"""

from __future__ import annotations

import re

from tuner.errors import UserError

#: A study name: one path segment that starts with a letter or digit (so never ``..``).
_SAFE_NAME = re.compile(r"\w[\w.+=,-]*")


def check_study_name(name: object) -> None:
    """The study name is one folder name: it becomes ``runs/studies/<name>``, the MLflow
    experiment and its artifact folders, so ``..`` or ``/`` in it would write outside ``runs/``.
    """
    text = str(name)
    if not _SAFE_NAME.fullmatch(text) or len(text) > 120:
        raise UserError(
            "study.name",
            name,
            "give one folder name of letters, digits and . _ - + = , (no / or .., at most 120 "
            "characters), e.g. study.name=my-study",
        )
