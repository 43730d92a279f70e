"""Fixtures of the command's tests: the real ``depot`` console script, run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

#: The console script pip installed beside this Python.
SCRIPT = Path(sys.executable).with_name("depot")


class Run:
    """Runs ``depot ARGS`` in ``cwd`` with only the ``DEPOT_*`` variables given."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env: dict[str, str] = {}

    def __call__(
        self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
        # The tests' models are imported from the repository: `--models tests.ops.models`.
        environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), environ.get("PYTHONPATH", "")) if p
        )
        environ.update(self.env)
        environ.update(env or {})
        done = subprocess.run(
            [str(SCRIPT), *args],
            cwd=self.cwd,
            env=environ,
            input=input,
            capture_output=True,
            timeout=120,
        )
        return subprocess.CompletedProcess(
            done.args,
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )

    def raw(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
        environ.update(self.env)
        return subprocess.run(
            [str(SCRIPT), *args],
            cwd=self.cwd,
            env=environ,
            capture_output=True,
            timeout=120,
            **kwargs,
        )


@pytest.fixture
def depot(tmp_path: Path) -> Run:
    """``depot(...)`` runs the command in an empty directory of the test's."""
    if not SCRIPT.exists():
        pytest.fail(
            f"{SCRIPT} is missing: install the package (pip install -e '.[all,test]') "
            "so pip writes the console script."
        )
    (tmp_path / "work").mkdir()
    return Run(tmp_path / "work")


@pytest.fixture
def local_ini(tmp_path: Path) -> Callable[..., Path]:
    """Writes a depot.ini of local depots (name -> directory) in the command's directory."""

    def write(**depots: str) -> Path:
        lines = []
        for name, directory in depots.items():
            lines += [
                f"[depot:{name}]",
                "depot.backend = local",
                f"depot.storage_path = {directory}",
                "",
            ]
        path = tmp_path / "work" / "depot.ini"
        path.write_text("\n".join(lines))
        return path

    return write
