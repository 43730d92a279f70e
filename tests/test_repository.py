"""The repository keeps its promises: README commands, CI, lint and types."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_readme_example_runs() -> None:
    example = re.search(r"python (examples/\S+\.py)", readme_commands()[0]).group(1)
    result = subprocess.run(
        [sys.executable, example], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "checksum        sha256:" in result.stdout
    assert "b'Hello from depot!\\n'" in result.stdout


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
