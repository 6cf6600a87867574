"""The configs ship inside the package, and every subpackage is listed for the build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tests.conftest import REPO
from tuner.cli import config_dir


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "tuner").rglob("__init__.py")}
    assert found | {"tuner.conf"} == listed


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
