"""The GCS backend, against gcp-storage-emulator on 127.0.0.1 (or DEPOT_TEST_GCS_EMULATOR's).

The emulator runs as its own process (``python -m gcp_storage_emulator``), in
memory, so every request is real HTTP; google-cloud-storage reaches it through
``STORAGE_EMULATOR_HOST``, without credentials. Set ``DEPOT_TEST_GCS_EMULATOR``
to the URL of another emulator (fake-gcs-server, say) to run the suites there.
Each test gets a bucket of its own, emptied and removed afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ServerProcess


class GCSEmulator(ServerProcess):
    """gcp-storage-emulator in a subprocess on 127.0.0.1, in memory."""

    def __init__(self, log_dir: Path) -> None:
        if importlib.util.find_spec("gcp_storage_emulator") is None:
            pytest.skip("gcp-storage-emulator is not installed: pip install -e '.[test]'")
        command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"]
        options = ["--in-memory", "--quiet"]
        super().__init__(
            "gcp-storage-emulator",
            lambda port: [*command, "--port", str(port), *options],
            log_dir,
        )


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the GCS emulator, for ``STORAGE_EMULATOR_HOST``."""
    pytest.importorskip("google.cloud.storage", reason="the 'gcs' extra is not installed")
    given = os.environ.get("DEPOT_TEST_GCS_EMULATOR")
    if given:
        yield given
        return
    with GCSEmulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server.url


@pytest.fixture
def gcs_client(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A plain google-cloud-storage client of the emulator, to put and look at raw objects.

    Sets ``STORAGE_EMULATOR_HOST`` for the test: the storages made in it go there too.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return storage.Client(project="depot-test", credentials=AnonymousCredentials())


def remove_bucket(client: Any, name: str) -> None:
    """Empty and delete a bucket, if it exists."""
    from google.api_core.exceptions import Conflict, NotFound

    try:
        bucket = client.bucket(name)
        for blob in client.list_blobs(bucket):
            blob.delete()
        bucket.delete()
    except NotFound:
        pass
    except Conflict:
        pass  # an abandoned upload session holds it: the emulator goes with the session


@pytest.fixture
def gcs_settings(gcs_client: Any) -> Iterator[dict[str, Any]]:
    """A private depot in a new bucket, removed after the test."""
    bucket = f"depot-test-{uuid.uuid4().hex[:16]}"
    yield {
        "depot.backend": "gcs",
        "depot.bucket": bucket,
        "depot.policy": "private",
        "depot.project_id": "depot-test",
    }
    remove_bucket(gcs_client, bucket)


class _TokenHandler(BaseHTTPRequestHandler):
    """Google's OAuth token endpoint, as google-auth calls it for a service account key.

    ``/token`` hands out a token (the emulator checks none); ``/refuse`` answers
    as Google does for a deleted or revoked key.
    """

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/token":
            status, answer = 200, {"access_token": "depot-test-token", "expires_in": 3600}
        else:
            status, answer = 400, {"error": "invalid_grant", "error_description": "Invalid JWT"}
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def gcs_token_server() -> Iterator[str]:
    """The base URL of a local OAuth token endpoint (see ``_TokenHandler``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def _gcs_private_key() -> str:
    pytest.importorskip("cryptography", reason="google-auth's cryptography is not installed")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="session")
def gcs_service_account(gcs_token_server: str, _gcs_private_key: str) -> dict[str, str]:
    """A service account key (made up, never valid at Google) whose tokens come from
    ``gcs_token_server``: a storage given it signs URLs, and its requests carry a token.
    """
    return {
        "type": "service_account",
        "project_id": "depot-test",
        "private_key_id": "depot-test-key",
        "private_key": _gcs_private_key,
        "client_email": "depot-test@depot-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{gcs_token_server}/token",
    }
