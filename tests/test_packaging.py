"""The package as users install it: the config tree travels with the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_package_is_listed_for_the_wheel():
    """pyproject lists packages by hand (conf/ is mapped into mmzoo.conf): a new package
    that is not listed would be missing from every installed copy."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted([*find_packages(str(ROOT / "src")), "mmzoo.conf"])


def test_the_config_tree_is_found_as_a_package():
    from mmzoo.presets import conf_root, groups

    assert conf_root().joinpath("config.yaml").is_file()
    assert {"model", "encoder", "bridge", "llm", "data", "trainer", "callbacks", "evaluation", "budget"} <= set(groups())


@pytest.mark.slow
def test_an_installed_wheel_runs_help_from_a_fresh_environment(tmp_path):
    """Build the wheel, install it (without dependencies, which the fresh environment borrows
    from this one's site-packages as a plain path) and ask for --help outside the checkout."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(ROOT)], check=True, capture_output=True)
    wheel = next(wheel_dir.glob("mmzoo-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # dependencies from this environment, as a path entry: its .pth files (our editable
    # install among them) are not processed, so only the wheel can provide mmzoo
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import mmzoo, mmzoo.conf; print(mmzoo.__file__)"], cwd=tmp_path,
                           env=env, check=True, capture_output=True, text=True).stdout
    assert where.startswith(site), where
    out = subprocess.run([str(python), "-m", "mmzoo.run", "--help"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for group in ("model", "encoder", "bridge", "llm", "data", "trainer", "callbacks", "evaluation", "experiment"):
        assert f"{group}:" in out.stdout, group
    assert "minigpt4" in out.stdout and "mlp3" in out.stdout
