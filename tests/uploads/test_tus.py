"""The tus 1.0 protocol, on both front ends (WSGI, ASGI) and the backends that keep uploads."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from depot.io.interfaces import FileStorage, StoredFile
from depot.io.memory import MemoryFileStorage
from depot.manager import DepotManager
from depot.uploads.chunked import ChunkedUploadsMixin
from depot.uploads.tus import TusASGIApp, TusServer, TusWSGIApp

Send = Callable[..., httpx.Response]
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


@pytest.fixture(params=["memory", "local", "gridfs", "s3"])
def depot(request: pytest.FixtureRequest) -> FileStorage:
    settings: dict[str, Any] = request.getfixturevalue(f"{request.param}_settings")
    return DepotManager.configure("default", settings)


@pytest.fixture
def completed() -> list[tuple[StoredFile, Any]]:
    return []


@pytest.fixture(params=["wsgi", "asgi"])
def make_client(
    request: pytest.FixtureRequest, completed: list[tuple[StoredFile, Any]]
) -> Callable[..., Send]:
    def make(**options: Any) -> Send:
        def on_complete(stored: StoredFile, status: Any, facts: Any) -> None:
            completed.append((stored, status))

        options.setdefault("on_complete", on_complete)
        server = TusServer("default", mountpoint="/files", **options)
        if request.param == "wsgi":
            client = httpx.Client(
                transport=httpx.WSGITransport(app=TusWSGIApp(server)), base_url="http://t"
            )
            return client.request

        app = TusASGIApp(server)

        def send(method: str, url: str, **kwargs: Any) -> httpx.Response:
            async def go() -> httpx.Response:
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    return await c.request(method, url, **kwargs)

            return anyio.run(go)

        return send

    return make


@pytest.fixture
def send(depot: FileStorage, make_client: Callable[..., Send]) -> Send:
    return make_client()


def create(send: Send, length: int, **metadata: str) -> str:
    headers = {**TUS, "Upload-Length": str(length)}
    if metadata:
        headers["Upload-Metadata"] = ",".join(f"{k} {b64(v)}" for k, v in metadata.items())
    answer = send("POST", "/files", headers=headers)
    assert answer.status_code == 201, answer.text
    location: str = answer.headers["location"]
    assert location.startswith("/files/")
    return location


def test_options_tell_versions_extensions_and_the_max_size(
    depot: FileStorage, make_client: Callable[..., Send]
) -> None:
    answer = make_client(max_size=1000)("OPTIONS", "/files")
    assert answer.status_code == 204
    assert answer.headers["tus-version"] == "1.0.0"
    assert set(answer.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
        "expiration",
    }
    assert answer.headers["tus-max-size"] == "1000"
    assert "sha256" in answer.headers["tus-checksum-algorithm"].split(",")


def test_an_upload_in_three_patches(
    depot: FileStorage, send: Send, completed: list[tuple[StoredFile, Any]]
) -> None:
    data = bytes(range(256)) * 1000
    url = create(send, len(data), filename="talk.pdf", filetype="application/pdf", k="v")
    head = send("HEAD", url, headers=TUS)
    assert head.status_code == 200
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("0", str(len(data)))
    assert head.headers["cache-control"] == "no-store"
    assert "filename " + b64("talk.pdf") in head.headers["upload-metadata"]
    offset = 0
    for piece in (data[:100_000], data[100_000:200_000], data[200_000:]):
        answer = send("PATCH", url, headers={**CHUNK, "Upload-Offset": str(offset)}, content=piece)
        assert answer.status_code == 204, answer.text
        offset += len(piece)
        assert answer.headers["upload-offset"] == str(offset)
        assert "upload-expires" in answer.headers
    ((stored, status),) = completed
    assert stored.read() == data
    assert (stored.filename, stored.content_type) == ("talk.pdf", "application/pdf")
    assert status.metadata["k"] == "v"
    assert depot.get(stored.file_id).checksum == "sha256:" + hashlib.sha256(data).hexdigest()
    # Done: the upload reports its end, and takes no more bytes.
    assert send("HEAD", url, headers=TUS).headers["upload-offset"] == str(len(data))


def test_creation_with_upload(depot: FileStorage, send: Send, completed: list[Any]) -> None:
    headers = {**CHUNK, "Upload-Length": "5", "Upload-Metadata": f"filename {b64('a.txt')}"}
    answer = send("POST", "/files", headers=headers, content=b"hel")
    assert (answer.status_code, answer.headers["upload-offset"]) == (201, "3")
    url = answer.headers["location"]
    send("PATCH", url, headers={**CHUNK, "Upload-Offset": "3"}, content=b"lo")
    assert completed[0][0].read() == b"hello"


def test_an_empty_upload_is_stored_at_creation_with_upload(
    depot: FileStorage, send: Send, completed: list[Any]
) -> None:
    answer = send("POST", "/files", headers={**CHUNK, "Upload-Length": "0"}, content=b"")
    assert answer.status_code == 201
    url = answer.headers["location"]
    answer = send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"")
    assert answer.status_code == 204
    assert completed and completed[0][0].read() == b""


def test_an_empty_upload_is_stored_at_creation(
    depot: FileStorage, send: Send, completed: list[Any]
) -> None:
    """tus-js-client sends no PATCH for an empty file: the 201 is its success."""
    headers = {**TUS, "Upload-Length": "0", "Upload-Metadata": f"filename {b64('empty.txt')}"}
    answer = send("POST", "/files", headers=headers)
    assert answer.status_code == 201
    assert [(s.filename, s.read()) for s, _ in completed] == [("empty.txt", b"")]
    # Asked again (a client resuming it), it is done, and stored once.
    head = send("HEAD", answer.headers["location"], headers=TUS)
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("0", "0")
    assert len(completed) == 1


def test_patch_errors(depot: FileStorage, send: Send) -> None:
    url = create(send, 10)
    cases = [
        ({**TUS, "Content-Type": "text/plain", "Upload-Offset": "0"}, 415),
        ({**CHUNK}, 400),
        ({**CHUNK, "Upload-Offset": "-1"}, 400),
        ({**CHUNK, "Upload-Offset": "1e3"}, 400),
        ({**CHUNK, "Upload-Offset": "9" * 40}, 400),
        ({**CHUNK, "Upload-Offset": "5"}, 409),
        ({"Content-Type": CHUNK["Content-Type"], "Upload-Offset": "0"}, 412),
        ({**CHUNK, "Tus-Resumable": "0.2.2", "Upload-Offset": "0"}, 412),
    ]
    for headers, status in cases:
        answer = send("PATCH", url, headers=headers, content=b"abc")
        assert answer.status_code == status, (headers, answer.text)
        assert answer.headers["tus-resumable"] == "1.0.0"
    assert send("HEAD", url, headers=TUS).headers["upload-offset"] == "0"
    answer = send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"x" * 11)
    assert answer.status_code == 413
    assert send("HEAD", url, headers=TUS).headers["upload-offset"] == "0"
    wrong = send("PATCH", url, headers={**CHUNK, "Upload-Offset": "3"}, content=b"abc")
    assert wrong.headers["upload-offset"] == "0"  # where to go on from


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksums(depot: FileStorage, send: Send, completed: list[Any], algorithm: str) -> None:
    url = create(send, 6)
    good = base64.b64encode(hashlib.new(algorithm, b"abc").digest()).decode()
    bad = base64.b64encode(hashlib.new(algorithm, b"xyz").digest()).decode()
    headers = {**CHUNK, "Upload-Offset": "0"}
    answer = send(
        "PATCH", url, headers={**headers, "Upload-Checksum": f"{algorithm} {bad}"}, content=b"abc"
    )
    assert answer.status_code == 460
    assert send("HEAD", url, headers=TUS).headers["upload-offset"] == "0"
    answer = send(
        "PATCH", url, headers={**headers, "Upload-Checksum": f"{algorithm} {good}"}, content=b"abc"
    )
    assert (answer.status_code, answer.headers["upload-offset"]) == (204, "3")
    for checksum in ("crc32 AAAA", f"{algorithm} not-base64!", f"{algorithm}"):
        answer = send(
            "PATCH",
            url,
            headers={**CHUNK, "Upload-Offset": "3", "Upload-Checksum": checksum},
            content=b"def",
        )
        assert answer.status_code == 400, checksum
    assert not completed


def test_termination_and_unknown_uploads(depot: FileStorage, send: Send) -> None:
    url = create(send, 10)
    assert send("DELETE", url, headers=TUS).status_code == 204
    assert send("HEAD", url, headers=TUS).status_code == 404
    assert (
        send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"a").status_code == 404
    )
    for odd in ("/files/../../etc/passwd", "/files/%00", "/files/" + "a" * 5000, "/files/x/y"):
        answer = send("HEAD", odd, headers=TUS)
        assert answer.status_code == 404, odd
    assert send("GET", url, headers=TUS).status_code in (404, 405)
    assert send("PUT", "/files", headers=TUS).status_code == 405


def test_expired_uploads_are_gone(depot: FileStorage, send: Send) -> None:
    depot.upload_expiry = 0.5
    url = create(send, 10)
    expires = send("HEAD", url, headers=TUS).headers["upload-expires"]
    assert expires.endswith(" GMT")
    time.sleep(1.1)
    assert send("HEAD", url, headers=TUS).status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Upload-Defer-Length": "1"}, 400),
        ({"Upload-Length": "-5"}, 400),
        ({"Upload-Length": "5", "Upload-Metadata": "filename !!!"}, 400),
        ({"Upload-Length": "5", "Upload-Metadata": "a b c"}, 400),
        ({"Upload-Length": "5", "Upload-Metadata": "a YQ==,a YQ=="}, 400),
        ({"Upload-Length": "5", "Upload-Concat": "partial"}, 400),
        ({"Upload-Length": "2000"}, 413),
    ],
)
def test_bad_creations(
    depot: FileStorage, make_client: Callable[..., Send], headers: dict[str, str], status: int
) -> None:
    send = make_client(max_size=1000)
    answer = send("POST", "/files", headers={**TUS, **headers})
    assert answer.status_code == status, answer.text
    assert depot.list() == []


def test_the_depot_policy_is_told_to_the_client(
    make_client: Callable[..., Send], memory_settings: dict[str, Any]
) -> None:
    DepotManager.configure(
        "default", {**memory_settings, "depot.allowed_types": "image/png", "depot.max_size": 100}
    )
    send = make_client()
    assert send("OPTIONS", "/files").headers["tus-max-size"] == "100"
    meta = f"filename {b64('page.html')},filetype {b64('text/html')}"
    answer = send("POST", "/files", headers={**TUS, "Upload-Length": "5", "Upload-Metadata": meta})
    assert answer.status_code == 415
    assert "not accepted here" in answer.text
    # Declared a PNG, sent a page: refused when the last byte is in.
    meta = f"filename {b64('a.png')},filetype {b64('image/png')}"
    url = send(
        "POST", "/files", headers={**TUS, "Upload-Length": "20", "Upload-Metadata": meta}
    ).headers["location"]
    answer = send(
        "PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"<html><script>x()</s"
    )
    assert answer.status_code == 415


def test_metadata_with_control_characters_is_stored_safely(
    depot: FileStorage, send: Send, completed: list[Any]
) -> None:
    url = create(send, 1, filename="a\r\nSet-Cookie: x=1.txt")
    head = send("HEAD", url, headers=TUS)
    assert "set-cookie" not in head.headers
    assert all("\n" not in v and "\r" not in v for v in head.headers.values())
    send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"x")
    # Stored as sent, as create() stores names; the middleware sends it encoded.
    assert completed[0][0].filename == "a\r\nSet-Cookie: x=1.txt"


def test_cors_for_configured_origins_only(
    depot: FileStorage, make_client: Callable[..., Send]
) -> None:
    send = make_client(cors_origins=["https://app.example"])
    answer = send("OPTIONS", "/files", headers={"Origin": "https://app.example"})
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert "PATCH" in answer.headers["access-control-allow-methods"]
    assert "Upload-Offset" in answer.headers["access-control-allow-headers"]
    answer = send(
        "POST", "/files", headers={**TUS, "Upload-Length": "1", "Origin": "https://app.example"}
    )
    assert "Location" in answer.headers["access-control-expose-headers"]
    other = send("OPTIONS", "/files", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    anyone = make_client(cors_origins=["*"])("OPTIONS", "/files", headers={"Origin": "https://x"})
    assert anyone.headers["access-control-allow-origin"] == "*"


def test_method_override(depot: FileStorage, send: Send, completed: list[Any]) -> None:
    url = create(send, 2)
    headers = {**CHUNK, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}
    assert send("POST", url, headers=headers, content=b"ok").status_code == 204
    assert completed[0][0].read() == b"ok"


def test_metadata_keys_of_any_shape(depot: FileStorage, send: Send, completed: list[Any]) -> None:
    # Keys come from the client: none may break the staging (MongoDB refuses "$" keys).
    meta = f"$where {b64('1')},a.b {b64('2')},empty,filename {b64('x.txt')}"
    answer = send("POST", "/files", headers={**TUS, "Upload-Length": "1", "Upload-Metadata": meta})
    assert answer.status_code == 201, answer.text
    url = answer.headers["location"]
    send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"x")
    assert completed[0][1].metadata == {"$where": "1", "a.b": "2", "empty": "", "filename": "x.txt"}


def test_an_empty_patch_changes_nothing(
    depot: FileStorage, send: Send, completed: list[Any]
) -> None:
    url = create(send, 4)
    answer = send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"")
    assert (answer.status_code, answer.headers["upload-offset"]) == (204, "0")
    send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"abcd")
    assert completed[0][0].read() == b"abcd"


def test_a_refused_upload_is_not_kept(
    make_client: Callable[..., Send], memory_settings: Any
) -> None:
    DepotManager.configure("default", {**memory_settings, "depot.allowed_types": "image/png"})
    send = make_client()
    meta = f"filename {b64('a.png')},filetype {b64('image/png')}"
    url = send(
        "POST", "/files", headers={**TUS, "Upload-Length": "5", "Upload-Metadata": meta}
    ).headers["location"]
    assert (
        send("PATCH", url, headers={**CHUNK, "Upload-Offset": "0"}, content=b"<html").status_code
        == 415
    )
    assert send("HEAD", url, headers=TUS).status_code == 404


class NoUploads(MemoryFileStorage):
    """A backend that keeps no uploads: the mixin's own ``_staging``."""

    _staging = ChunkedUploadsMixin._staging  # type: ignore[assignment]


def test_a_depot_without_uploads_or_no_depot_is_no_500(make_client: Callable[..., Send]) -> None:
    send = make_client()  # "default" is not configured yet
    assert send("OPTIONS", "/files").status_code == 503
    assert send("POST", "/files", headers={**TUS, "Upload-Length": "1"}).status_code == 503
    DepotManager.configure("default", {"depot.backend": f"{__name__}.NoUploads"})
    assert send("POST", "/files", headers={**TUS, "Upload-Length": "1"}).status_code == 501
