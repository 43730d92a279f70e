"""Start an example app the way its users do, and read the URL it prints; sample files."""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

#: Variables of the apps' settings that a developer's shell may hold.
_SETTINGS_PREFIXES = ("FILEBOX_", "DEPOT_BACKEND", "DEPOT_STORAGE_PATH", "DEPOT_S3_")


def app_environment(data_dir: Path, **variables: str) -> dict[str, str]:
    """The environment of an app storing under ``data_dir``, on a free port of 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
    env.update(FILEBOX_DATA=str(data_dir), FILEBOX_HOST="127.0.0.1", FILEBOX_PORT="0")
    env.update(variables)
    return env


@dataclass
class RunningApp:
    url: str
    data_dir: Path

    @property
    def storage(self) -> Path:
        """The local depot's directory: one subdirectory per stored file id."""
        return self.data_dir / "files"


@contextmanager
def serving(
    command: list[str], env: dict[str, str], log: Path, timeout: float = 60
) -> Iterator[str]:
    """Run ``command`` (an example app) from the repository root; yield the URL it prints.

    The app is ready when it prints its URL (it listens before printing).
    """
    with open(log, "wb") as errors:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=errors, text=True
        )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    try:
        line = _first_line(lines, process, timeout)
        url = next((word for word in line.split() if word.startswith("http://")), None)
        if url is None:
            process.kill()
            process.wait(timeout=30)
            raise AssertionError(
                f"{' '.join(command)} printed no URL within {timeout}s "
                f"(exit code {process.returncode}); it printed {line!r}, "
                f"and on stderr:\n{log.read_text(errors='replace')[-3000:]}"
            )
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        stdout.close()


def _first_line(lines: queue.Queue[str], process: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = process.poll() is not None
        try:
            return lines.get(timeout=1 if exited else 0.1)
        except queue.Empty:
            if exited:
                break
    return ""


def example_command(script: str) -> list[str]:
    """``python examples/<script>`` with the interpreter running the tests."""
    return [sys.executable, str(EXAMPLES / script)]


def make_jpeg(size: tuple[int, int] = (300, 200), color: str = "teal") -> bytes:
    """A JPEG image of one color."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()
