"""The configs ship inside the package, and every subpackage is listed for the build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tests.conftest import REPO
from tuner.cli import config_dir


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "tuner").rglob("__init__.py")}
    groups = {f"tuner.conf.{d.name}" for d in (REPO / "conf").iterdir() if d.is_dir()}
    assert found | {"tuner.conf"} | groups == listed


def test_configs_are_found_from_any_directory(tmp_path):
    assert (Path(config_dir()) / "config.yaml").is_file()
    assert sys.modules["tuner"].__file__


def test_a_plain_install_runs_from_another_directory(tmp_path):
    """`pip install .` (not editable): configs come from the installed package."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    assert (target / "tuner" / "conf" / "config.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", "import tuner.cli as c; print(c.config_dir())"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().startswith(str(target))
    composed = subprocess.run(
        [sys.executable, "-m", "tuner", "--cfg", "model=mlp"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert composed.returncode == 0, composed.stderr
    assert "tuner.models.MLP" in composed.stdout


#: What setuptools says about a project's build config: its warnings and deprecations.
_BUILD_WARNING = re.compile(
    r"SetuptoolsDeprecationWarning|SetuptoolsWarning|_Warning:|BuildBackendWarning|is deprecated"
)


def _project_copy(tmp_path: Path) -> Path:
    """The files a build reads, copied, so the build's own folders stay out of the checkout."""
    source = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, source / name)
    for folder in ("tuner", "conf"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return source


def _fresh_venv(tmp_path: Path) -> Path:
    """A new virtual environment that sees this one's packages (pip, setuptools, torch) without
    reinstalling them: its own bundled setuptools would be older than the build needs."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
@pytest.mark.parametrize("spec", [".", "-e .[test]"], ids=["install", "editable-test"])
def test_installs_print_no_setuptools_warnings(tmp_path, spec):
    """README command 2 (and a plain install) in a fresh venv: not one warning from the build config."""
    source, python = _project_copy(tmp_path), _fresh_venv(tmp_path)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation", *spec.split()],
        cwd=source,
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "Successfully installed tuner" in output, output[-2000:]
    warnings = [line for line in output.splitlines() if _BUILD_WARNING.search(line)]
    assert warnings == [], "\n".join(warnings)
    installed = subprocess.run(
        [
            str(python),
            "-c",
            "import tuner.cli as c; print((c.config_dir() / 'search' / 'default.yaml').is_file())",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert installed.stdout.strip() == "True", installed.stderr
