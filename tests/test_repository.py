"""The repository keeps its promises: README commands, CI, lint and types."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.examples.apps import app_environment, serving

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.rst").read_text()
    block = text.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_readme_opens_with_two_commands_and_ci_runs_the_second() -> None:
    run_example, run_tests = readme_commands()
    assert "examples/" in run_example
    assert "pytest" in run_tests
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert run_tests in ci_lines


def test_readme_first_command_installs_and_starts_the_example_app(tmp_path: Path) -> None:
    """What the first command installs is what the app needs; the app starts and serves."""
    *install, start = (part.strip() for part in readme_commands()[0].split("&&"))
    extras = re.search(r"pip install -e '\.\[(\w+)\]'", install[-1]).group(1).split(",")
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    installed = {
        re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0].lower()
        for extra in extras
        for requirement in config["options.extras_require"][extra].split()
    }
    assert {"flask", "waitress", "sqlalchemy", "pillow"} <= installed

    script = re.fullmatch(r"\.venv/bin/python (examples/\S+\.py)", start).group(1)
    env = app_environment(tmp_path / "data")  # FILEBOX_PORT=0: a free port, not 8080
    with serving([sys.executable, script], env, tmp_path / "app.log") as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        with urllib.request.urlopen(url) as response:
            page = response.read().decode()
    assert response.status == 200
    assert '<form id="upload"' in page


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return path


def test_ruff() -> None:
    result = subprocess.run(
        [_tool("ruff"), "check", "--output-format", "concise", "."],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout
    result = subprocess.run(
        [_tool("ruff"), "format", "--check", "."], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stdout


def test_mypy() -> None:
    result = subprocess.run([_tool("mypy")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", "docs", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
