"""Test hosts: sentq installed from the wheel the suite builds (offline), run as a user's box would run it: its own
HOME, TMPDIR and working directory outside the repository, no SENTQ_DATA_DIR, pip pointed at a closed port. The
suite's venv supplies the dependencies (celery, redis, numpy...); the wheel's sentq shadows the editable one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Worker

# pip is given this index: a closed port on loopback, so a download fails at once and nothing leaves the machine.
DEAD_INDEX = "http://127.0.0.1:9/simple"


@dataclass
class Installed:
    """The wheel built from this checkout, installed with `pip install --target` into ``site``."""

    wheel: Path
    site: Path


def pip_env(**extra: str) -> dict[str, str]:
    """The environment without anything pip would read from the machine (its config files, PIP_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "SENTQ_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL=DEAD_INDEX,
        PIP_NO_CACHE_DIR="1",
        PIP_FIND_LINKS="",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    env.update(extra)
    return env


def install_wheel(root: Path) -> Installed:
    """Build the wheel offline from a copy of the sources (setuptools' build/ never lands in the checkout) and
    install it under ``root`` without its dependencies (conftest's session fixture ``installed``)."""
    src = root / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "sentq", src / "sentq", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheelhouse, site = root / "wheelhouse", root / "site"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    built = subprocess.run([*build, "-w", str(wheelhouse), str(src)], env=pip_env(), capture_output=True, text=True)
    wheels = sorted(wheelhouse.glob("sentq-*.whl"))
    if built.returncode != 0 or len(wheels) != 1:
        pytest.fail(
            "could not build sentq's wheel offline with the venv's build backend (setuptools >= 70.1 builds wheels "
            f"without network; `make setup` installs it): exit {built.returncode}\n{built.stderr[-3000:]}"
        )
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site)]
    done = subprocess.run([*install, str(wheels[0])], env=pip_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (site / "sentq" / "web" / "templates" / "base.html").is_file()  # package data made it into the wheel
    return Installed(wheels[0], site)


@dataclass
class Host:
    """A user's box with the installed sentq: its own HOME, TMPDIR and working directory, outside the repo.

    ``prefix`` runs every command of the host through another one first (``ip netns exec NAME``: tests/netns.py).
    """

    installed: Installed
    root: Path
    url: str
    prefix: list[str] = field(default_factory=list)
    # Directories put before the wheel on PYTHONPATH (a copy of the test hooks, tests/hooks/sitecustomize.py).
    paths: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        for d in (self.home, self.tmp, self.cwd):
            d.mkdir(parents=True, exist_ok=True)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def cwd(self) -> Path:
        return self.root / "work"

    @property
    def data_dir(self) -> Path:
        """Where an installed sentq keeps its data on Linux, with XDG_DATA_HOME unset."""
        return self.home / ".local" / "share" / "sentq"

    def env(self, **extra: str) -> dict[str, str]:
        env = pip_env(
            HOME=str(self.home),
            TMPDIR=str(self.tmp),
            PYTHONPATH=os.pathsep.join(str(p) for p in [*self.paths, self.installed.site]),
            PYTHONUNBUFFERED="1",
            SENTQ_BROKER_URL=self.url,
        )
        for name in ("XDG_DATA_HOME", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(name, None)
        env.update(extra)
        return env

    def python(self, code: str, *, timeout: float = 60) -> Any:
        proc = subprocess.run(
            [*self.prefix, sys.executable, "-c", code],
            env=self.env(),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def sentq(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, sys.executable, "-m", "sentq.cli", *args],
            env=self.env(**env),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def worker(self, name: str, *, concurrency: int = 1, queues: str | None = None, **env: str) -> Worker:
        """conftest's Worker, started in this host's environment and working directory instead of the checkout."""
        log = self.root / f"{name}.log"
        return Worker(
            self.url,
            log,
            name=f"{name}@%h",
            concurrency=concurrency,
            env=self.env(**env),
            cwd=self.cwd,
            prefix=self.prefix,
            queues=queues,
        ).start()
