"""The README and docs/: short README, every page linked, no dead link, every documented command valid.

Each ``python -m tuner ...`` line of a fenced ``bash`` block runs in this process through
``main(args, check_only=True)``: the command line and every check of the config a study makes
before it starts, without training, writing files or reaching a server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from tuner.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
EXAMPLES_CONF = ROOT / "examples" / "modadd" / "conf"

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

# Documented commands not run, with the reason: a needle of the command -> why.
SKIPPED = {
    "PYTHONPATH=path/to/your/code": "a placeholder: the user's own model module",
}


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines"


def test_every_doc_page_is_linked_from_the_readme() -> None:
    assert DOCS, "no docs/ pages"
    linked = {(ROOT / link.split("#")[0]).resolve() for link in _links(README)}
    missing = [page.name for page in DOCS if page.resolve() not in linked]
    assert not missing, f"not linked from README.md: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    bad = []
    for link in _links(page):
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            bad.append(f"{link}: no {path.relative_to(ROOT) if ROOT in path.parents else path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            bad.append(f"{link}: no heading #{anchor} in {path.name}")
    assert not bad, f"{page.name}: " + "; ".join(bad)


def _commands() -> list[tuple[str, str, str]]:
    """(page, command, why it is skipped or "") for every ``python -m tuner`` line of a bash block."""
    found = []
    for page in PAGES:
        for lang, body in FENCE.findall(page.read_text()):
            if lang != "bash":
                continue
            for line in body.replace("\\\n", " ").splitlines():
                # A command after `cd dir &&` or `pip install ... &&` is still the project's.
                for part in line.split("&&"):
                    part = re.sub(r"\s+#.*$", "", part.strip())
                    if "python -m tuner" not in part:
                        continue
                    why = next((r for needle, r in SKIPPED.items() if needle in part), "")
                    if not why and not part.startswith("python -m tuner"):
                        why = "environment assignments before the command"
                    if not why and re.search(r"\$|<[^>]*>|\.\.\.", part):
                        why = "shell variables, placeholders or elided arguments"
                    found.append((page.name, part, why))
    return found


COMMANDS = _commands()


RUNNABLE = [(page, command) for page, command, why in COMMANDS if not why]


def test_commands_are_found() -> None:
    # The README's quick start and running studies, and the pages' examples.
    assert len(RUNNABLE) >= 25, COMMANDS
    # The few that cannot run as written (a placeholder module, elided arguments) say why,
    # and stay few: a new example should be runnable.
    not_run = [(page, command, why) for page, command, why in COMMANDS if why]
    assert len(not_run) <= 3, not_run


@pytest.mark.parametrize(("page", "command"), RUNNABLE, ids=[f"{p}:{c[16:60]}" for p, c in RUNNABLE])
def test_documented_command_passes_the_checks(
    page: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = shlex.split(command)[3:]
    if "-cd" in args or "--config-dir" in args:
        # A user project's folder (docs/configuration.md): examples/modadd is one. It runs from
        # a copy, with its data made as its README says, its code on the import path.
        project = tmp_path / "my_project"
        shutil.copytree(EXAMPLES_CONF.parent, project)
        x, y = _load(project / "make_data.py").make(31)
        (project / "data").mkdir()
        np.savez(project / "data" / "modadd.npz", x=x, y=y)
        flag = "-cd" if "-cd" in args else "--config-dir"
        args[args.index(flag) + 1] = "conf"
        args = ["experiment=modadd" if a == "experiment=x" else a for a in args]
        monkeypatch.chdir(project)
        monkeypatch.syspath_prepend(str(project))
    else:
        monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNER_HOME", str(tmp_path / "runs"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args, check_only=True)
    assert code == 0, f"{page}: {command}\n{err.getvalue()}"


def test_architecture_maps_every_config_group() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    groups = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and not p.name.startswith("_"))
    missing = [g for g in groups if f"`{g}`" not in text]
    assert not missing, f"conf/ groups missing from docs/architecture.md: {missing}"


def test_architecture_names_only_paths_that_exist_and_every_folder() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"\btuner/[\w/]*\w(?:\.py)?", text))
    gone = sorted(p for p in named if not (ROOT / p).exists())
    assert not gone, f"docs/architecture.md names what is not in the package: {gone}"
    folders = sorted(p.name for p in (ROOT / "tuner").iterdir() if (p / "__init__.py").is_file())
    missing = [f for f in folders if f"`{f}/`" not in text]
    assert not missing, f"folders of tuner/ without a paragraph in docs/architecture.md: {missing}"
