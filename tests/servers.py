"""Real servers on 127.0.0.1 for end-to-end tests.

gunicorn, granian (WSGI and ASGI) and uvicorn running tests/wsgi_app.py or
tests/asgi_app.py over a local depot, nginx in front, and the storage servers
the remote backends' tests talk to.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def server_environment(storage: Path, offload: str | None = None) -> dict[str, str]:
    """The environment tests/wsgi_app.py and tests/asgi_app.py read their depot from."""
    return {
        **os.environ,
        "DEPOT_TEST_STORAGE": str(storage),
        "DEPOT_TEST_OFFLOAD": offload or "",
        # The checkout first (its depot wins over the installed one); never tests/
        # itself, whose http/ would shadow the standard library's http package.
        "PYTHONPATH": str(REPO),
    }


@contextmanager
def _serving(command: list[str], env: dict[str, str], port: int, what: str) -> Iterator[int]:
    """Run ``command`` until the block ends; yields its pid once ``port`` accepts."""
    # The servers put their working directory on sys.path too.
    process = subprocess.Popen(command, env=env, cwd=str(REPO))
    try:
        wait_for_port(port, process, what)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def worker_pid(master: int, timeout: float = 30) -> int:
    """The pid of the one worker process ``master`` forked (it is the one that serves).

    A pre-forking server listens before its worker has started: this waits for it.
    """
    # Imported here: the storage servers' fixtures in this module run without it.
    import psutil

    parent = psutil.Process(master)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = parent.children()
        if len(children) == 1:
            return children[0].pid
        if len(children) > 1:
            raise RuntimeError(f"{master} has {len(children)} workers; start it with one")
        time.sleep(0.05)
    raise RuntimeError(f"{master} started no worker within {timeout}s")


@contextmanager
def gunicorn(
    storage: Path,
    offload: str | None = None,
    workers: int = 1,
    app_target: str = "tests.wsgi_app:application",
) -> Iterator[tuple[int, int]]:
    """Serve ``app_target`` (tests/wsgi_app.py); yields (port, master pid).

    The workers are the master's children (:func:`worker_pid` finds a lone one).
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--log-level",
        "warning",
        app_target,
    ]
    with _serving(command, server_environment(storage, offload), port, "gunicorn") as pid:
        yield port, pid


@contextmanager
def uvicorn(
    app_target: str, storage: Path, offload: str | None = None
) -> Iterator[tuple[int, int]]:
    """Serve the ASGI ``app_target`` with uvicorn, one process; yields (port, its pid)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        app_target,
    ]
    with _serving(command, server_environment(storage, offload), port, "uvicorn") as pid:
        yield port, pid


@contextmanager
def granian(
    app_target: str,
    storage: Path,
    interface: Literal["wsgi", "asgi"] = "wsgi",
    offload: str | None = None,
) -> Iterator[tuple[int, int]]:
    """Serve ``app_target`` with granian, one worker; yields (port, the worker's pid).

    granian's main process only supervises: the worker it forks is the one
    that runs the application and holds its files and memory.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        interface,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
    ]
    if interface == "wsgi":
        # The default (a thread per request, up to the backlog) makes granian
        # warn at start; four is what the gunicorn fixture runs.
        command += ["--blocking-threads", "4"]
    command.append(app_target)
    env = server_environment(storage, offload)
    with _serving(command, env, port, f"granian ({interface})") as pid:
        yield port, worker_pid(pid)


class ServerProcess:
    """A test server in a subprocess on 127.0.0.1; its state lives in its memory.

    ``command`` gives its command line for a port. ``stop()`` and ``start()``
    again simulate an outage (everything it held is lost).
    """

    def __init__(
        self,
        name: str,
        command: Callable[[int], list[str]],
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._command = command(self.port)
        self._log = log_dir / f"{name.replace(' ', '-')}-{self.port}.log"
        self._env = {**os.environ, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                self._command, stdout=log, stderr=subprocess.STDOUT, env=self._env
            )
        try:
            wait_for_port(self.port, self._process, self.name)
        except RuntimeError as exc:
            self.stop()
            tail = self._log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; its log ends with:\n{tail}") from exc

    def stop(self) -> None:
        """Stop the server (everything it held is lost)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=30)
            self._process = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if found is None:
        pytest.fail(
            "nginx is not installed: run sh tests/system-packages.sh (as root on Debian), "
            "or install nginx"
        )
    return found


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        location /depot/ {{
            proxy_pass http://127.0.0.1:{upstream};
        }}
        # The location DepotMiddleware(offload='x-accel-redirect') points to.
        location /_depot/default/ {{
            internal;
            alias {storage}/;
        }}
        location /raw/ {{
            alias {storage}/;
        }}
    }}
}}
"""


@contextmanager
def nginx(storage: Path, upstream: int, root: Path) -> Iterator[int]:
    """nginx proxying /depot/ to ``upstream`` and serving offloaded files; yields its port."""
    binary = nginx_binary()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = root / "nginx.conf"
    # As root nginx would drop to 'nobody', who cannot read pytest's 0700 temp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        NGINX_CONF.format(root=root, port=port, upstream=upstream, storage=storage, user=user)
    )
    process = subprocess.Popen([binary, "-p", str(root), "-c", str(conf)])
    try:
        wait_for_port(port, process, "nginx")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
