"""``depot serve``: the depots over HTTP on 127.0.0.1, through the middleware."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from depot.manager import DepotManager
from tests.cli.conftest import SCRIPT, Run


def test_serve_answers_with_the_middlewares_rules_and_stops_on_ctrl_c(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "media"))
    media = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    file_id = media.create(b"0123456789" * 100, "digits.txt", "text/plain")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", "0"],
        cwd=depot.cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Serving media at http://127.0.0.1:"), first
        base = first.split(" at ")[1].split("/<depot>")[0]
        with requests.Session() as http:
            whole = http.get(f"{base}/media/{file_id}", timeout=10)
            assert whole.status_code == 200 and whole.content == b"0123456789" * 100
            assert whole.headers["Content-Type"].startswith("text/plain")
            part = http.get(f"{base}/media/{file_id}", headers={"Range": "bytes=10-19"}, timeout=10)
            assert part.status_code == 206 and part.content == b"0123456789"
            again = http.get(
                f"{base}/media/{file_id}",
                headers={"If-None-Match": whole.headers["ETag"]},
                timeout=10,
            )
            assert again.status_code == 304
            assert http.get(f"{base}/media/../../etc/passwd", timeout=10).status_code == 404
            assert http.get(f"{base.rsplit('/', 1)[0]}/elsewhere", timeout=10).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"GET /depot/media/{file_id} 206 Partial Content" in err
    assert "stopped" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_which_hosts_count_as_this_machine_for_the_serve_warning(host: str, loopback: bool) -> None:
    from depot.cli.serve import _loopback

    assert _loopback(host) is loopback
