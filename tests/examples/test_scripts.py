"""The examples run as their documentation says: ``python examples/<app>.py``."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.examples.apps import REPO, app_environment, example_command, serving


@pytest.mark.parametrize("script", ["flask_app.py", "wsgi_app.py", "pyramid_app.py"])
def test_script_starts_and_serves_its_page(script: str, tmp_path: Path) -> None:
    if script == "pyramid_app.py":
        pytest.importorskip("pyramid", reason="Pyramid is not installed: pip install -e '.[test]'")
    env = app_environment(tmp_path / "data")
    with serving(example_command(script), env, tmp_path / "app.log") as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url) as response:
            assert response.status == 200
            assert b"<form" in response.read()
    assert (tmp_path / "data" / "filebox.sqlite").is_file()


def test_a_wrong_setting_stops_the_script_with_what_to_set(tmp_path: Path) -> None:
    env = app_environment(tmp_path / "data", DEPOT_BACKEND="s3")
    result = subprocess.run(
        example_command("flask_app.py"), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "filebox: DEPOT_BACKEND=s3 needs DEPOT_S3_BUCKET, the bucket to store files in "
        "(it is created if missing)."
    )


def test_quickstart_stores_and_reads_back_a_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [*example_command("quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "checksum        sha256:" in result.stdout
    assert "b'Hello from depot!\\n'" in result.stdout


def multipart(name: str, size: int) -> tuple[bytes, str]:
    """A form's body with one file of ``size`` bytes, as a browser posts it; its type."""
    boundary = "----filebox-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + b"x" * size + f"\r\n--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


@pytest.mark.parametrize("script", ["flask_app.py", "pyramid_app.py", "wsgi_app.py"])
def test_a_form_post_over_the_limit_gets_the_apps_page_from_the_real_server(
    script: str, tmp_path: Path
) -> None:
    if script == "pyramid_app.py":
        pytest.importorskip("pyramid", reason="Pyramid is not installed: pip install -e '.[test]'")
    env = app_environment(tmp_path / "data", FILEBOX_MAX_UPLOAD_MB="1")
    with serving(example_command(script), env, tmp_path / "app.log") as url:
        for size in (1024 * 1024 + 1, 3 * 1024 * 1024):
            body, content_type = multipart("big.bin", size)
            action = url + ("files" if script == "flask_app.py" else "")
            request = urllib.request.Request(
                action, data=body, headers={"Content-Type": content_type}, method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(request)
            assert answer.value.code == 413
            assert answer.value.headers["Content-Type"].startswith("text/html")
            page = answer.value.read().decode()
            assert "larger than the 1.0 MiB accepted at once" in page
            assert "<form" in page
            answer.value.close()
