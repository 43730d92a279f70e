"""Direct uploads to GCS (gcp-storage-emulator): a signed PUT from requests, then the check.

The emulator takes a PUT at a signed URL (its XML API) but verifies neither the
signature nor the signed headers, nor any precondition: what GCS enforces from
the signature (the name, the type, ``x-goog-content-length-range``) is tested on
the URL's parameters, and what ``complete_upload()`` enforces on what arrives.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from depot.exceptions import (
    ChecksumMismatch,
    ConfigurationError,
    ContentTypeNotAllowed,
    UploadNotFound,
    UploadTooLarge,
)
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from depot.utils import make_content_disposition
from tests.backends.gcs_preconditions import PreconditionProxy, precondition_proxy
from tests.uploads.test_direct import KEYS, PNG

pytest.importorskip("depot.io.gcs", reason="the 'gcs' extra is not installed")

PAGE = b"<!DOCTYPE html><script>alert(1)</script>"


@pytest.fixture
def signing(gcs_settings: dict[str, Any], gcs_service_account: dict[str, str]) -> dict[str, Any]:
    """A private GCS depot with a service account key (to sign) and signing keys."""
    return {
        **gcs_settings,
        "depot.credentials": gcs_service_account,
        "depot.signing_keys": KEYS,
    }


@pytest.fixture
def depot(signing: dict[str, Any]) -> FileStorage:
    return DepotManager.configure("media", {**signing, "depot.allowed_types": "image/*"})


def objects(depot: FileStorage) -> list[str]:
    """Every object of the depot's bucket, staged ones included."""
    gcs = depot.client  # type: ignore[attr-defined]
    return [blob.name for blob in gcs.list_blobs(depot.bucket)]  # type: ignore[attr-defined]


def put(upload: Any, data: bytes, **headers: str) -> requests.Response:
    return requests.put(upload.url, data=data, headers={**upload.headers, **headers}, timeout=30)


def test_a_signed_put_becomes_a_stored_file(depot: FileStorage) -> None:
    upload = depot.presign_upload("dot.png", max_size=10_000)
    assert upload.method == "PUT" and upload.fields == {}
    assert upload.headers == {
        "Content-Type": "image/png",
        "x-goog-content-length-range": "0,10000",
    }
    answer = put(upload, PNG)
    assert answer.status_code == 200, answer.text
    assert objects(depot) == [f".depot-uploads/{upload.file_id}"]
    assert depot.list() == []  # not a file until completed
    file_id = depot.complete_upload(upload.token)
    assert file_id == upload.file_id
    stored = depot.get(file_id)
    assert stored.read() == PNG
    assert (stored.filename, stored.content_type) == ("dot.png", "image/png")
    assert stored.checksum == "sha256:" + hashlib.sha256(PNG).hexdigest()
    assert objects(depot) == [file_id]  # the staged object is gone
    assert depot.complete_upload(upload.token) == file_id  # asked again: the same file
    # The object carries depot's metadata as create() writes it: filedepot reads it.
    raw = depot.bucket.get_blob(file_id)  # type: ignore[attr-defined]
    assert raw.metadata["x-depot-filename"] == "dot.png"
    assert raw.metadata["x-depot-content-type"] == "image/png"
    assert raw.content_disposition == make_content_disposition("inline", "dot.png")


def test_the_signature_fixes_the_name_type_size_and_expiry(depot: FileStorage) -> None:
    upload = depot.presign_upload("a.png", max_size=500, expires_in=120)
    url = urlsplit(upload.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    bucket = depot.bucket.name  # type: ignore[attr-defined]
    assert url.path == f"/{bucket}/.depot-uploads/{upload.file_id}"
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Expires"] == "120"
    assert query["X-Goog-Credential"].startswith("depot-test@depot-test.iam.gserviceaccount.com/")
    # GCS refuses the PUT unless it carries these headers with the signed values.
    assert query["X-Goog-SignedHeaders"] == "content-type;host;x-goog-content-length-range"
    assert len(query["X-Goog-Signature"]) == 512
    assert abs(upload.expires_at - (time.time() + 120)) < 5


def test_no_range_is_signed_without_a_largest_size(signing: dict[str, Any]) -> None:
    free = DepotManager.configure("free", signing).presign_upload("a.bin")
    assert free.headers == {"Content-Type": "application/octet-stream"}
    assert (
        "x-goog-content-length-range"
        not in parse_qs(urlsplit(free.url).query)["X-Goog-SignedHeaders"][0]
    )
    bounded = DepotManager.configure("bounded", {**signing, "depot.max_size": "2000"})
    assert (
        bounded.presign_upload("a.bin", max_size=5000).headers["x-goog-content-length-range"]
        == "0,2000"
    )  # the depot's limit, the smaller


def test_what_arrived_is_refused_and_deleted(depot: FileStorage) -> None:
    # A page sent under an image's type: sniffed, refused, removed.
    upload = depot.presign_upload("cat.png", max_size=10_000)
    assert put(upload, PAGE).status_code == 200
    with pytest.raises(ContentTypeNotAllowed):
        depot.complete_upload(upload.token)
    assert objects(depot) == []
    # Not the checksum it was presigned with.
    upload = depot.presign_upload("c.png", checksum="sha256:" + "0" * 64)
    put(upload, PNG)
    with pytest.raises(ChecksumMismatch, match="presigned with: upload it again"):
        depot.complete_upload(upload.token)
    assert objects(depot) == []
    with pytest.raises(UploadNotFound, match="Nothing has arrived"):
        depot.complete_upload(upload.token)


def test_a_too_large_object_is_refused_unread(
    depot: FileStorage, patched: pytest.MonkeyPatch
) -> None:
    """The emulator does not enforce x-goog-content-length-range (GCS does): the size
    is checked at completion, from the object's metadata, before a byte is read."""
    upload = depot.presign_upload("big.png", max_size=100)
    assert upload.headers["x-goog-content-length-range"] == "0,100"
    assert put(upload, PNG + os.urandom(300_000)).status_code == 200
    downloads: list[str] = []
    depot.client._http.hooks["response"].append(  # type: ignore[attr-defined]
        lambda response, *a, **k: (
            downloads.append(response.request.url) if "alt=media" in response.request.url else None
        )
    )
    with pytest.raises(UploadTooLarge, match="at most 100 bytes"):
        depot.complete_upload(upload.token)
    assert downloads == []
    assert objects(depot) == []


def test_tokens_are_signed_and_expire(depot: FileStorage, signing: dict[str, Any]) -> None:
    upload = depot.presign_upload("a.png", expires_in=1)
    put(upload, PNG)
    body, signature = upload.token.split(".")
    for bad in (body + "." + signature[::-1], body[:-2] + "AA." + signature, "", "x" * 10_000):
        with pytest.raises(UploadNotFound, match="not valid"):
            depot.complete_upload(bad)
    time.sleep(1.2)
    with pytest.raises(UploadNotFound, match="expired"):
        depot.complete_upload(upload.token)
    assert depot.list() == []
    # Another depot, with other keys, does not take this depot's tokens.
    other = DepotManager.configure(
        "other", {**signing, "depot.signing_keys": "another-key-of-32-characters-!!!!"}
    )
    fresh = depot.presign_upload("a.png")
    put(fresh, PNG)
    with pytest.raises(UploadNotFound, match="not valid"):
        other.complete_upload(fresh.token)
    # The same keys, another prefix: the token names the staged object of this depot.
    prefixed = DepotManager.configure("prefixed", {**signing, "depot.prefix": "other/"})
    with pytest.raises(UploadNotFound, match="another depot"):
        prefixed.complete_upload(fresh.token)
    assert prefixed.list() == []
    assert depot.get(depot.complete_upload(fresh.token)).read() == PNG


def test_bad_presign_requests_say_what_to_give(
    depot: FileStorage, gcs_settings: dict[str, Any], signing: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="method is 'PUT' for a GCS depot"):
        depot.presign_upload("a.png", method="POST")
    with pytest.raises(ValueError, match="expires_in"):
        depot.presign_upload("a.png", expires_in=8 * 24 * 3600)
    with pytest.raises(ValueError, match="checksum"):
        depot.presign_upload("a.png", checksum="md5:abc")
    with pytest.raises(ContentTypeNotAllowed):
        depot.presign_upload("page.html")
    keyless = DepotManager.configure("keyless", {**signing, "depot.signing_keys": ""})
    with pytest.raises(ConfigurationError, match="signing_keys"):
        keyless.presign_upload("a.png")
    anonymous = DepotManager.configure("anonymous", {**gcs_settings, "depot.signing_keys": KEYS})
    with pytest.raises(ConfigurationError, match="need credentials that can sign"):
        anonymous.presign_upload("a.png")


def test_completing_before_the_bytes_arrive(depot: FileStorage) -> None:
    upload = depot.presign_upload("a.png")
    with pytest.raises(UploadNotFound, match="Nothing has arrived"):
        depot.complete_upload(upload.token)
    put(upload, PNG)
    assert depot.get(depot.complete_upload(upload.token)).read() == PNG


def test_replaying_a_token_after_the_file_was_deleted(depot: FileStorage) -> None:
    upload = depot.presign_upload("a.png")
    put(upload, PNG)
    file_id = depot.complete_upload(upload.token)
    depot.delete(file_id)
    with pytest.raises(UploadNotFound, match="Nothing has arrived"):
        depot.complete_upload(upload.token)
    assert objects(depot) == []


def test_bytes_sent_again_while_the_check_runs_are_never_stored(depot: FileStorage) -> None:
    """The signed PUT is valid until it expires: a client sends a PNG, then, once
    complete_upload() has read it, a page to the same name.

    GCS refuses the steps pinned to the generation checked; the emulator does
    not, and the copy's CRC32C (not the page's) is what keeps the page out.
    """
    upload = depot.presign_upload("a.png")
    put(upload, PNG)
    page = PAGE.ljust(len(PNG))  # the same size: only the CRC32C tells them apart
    sent: list[int] = []

    def resend_after_the_read(response: Any, *args: Any, **kwargs: Any) -> None:
        if "alt=media" in response.request.url and not sent:
            sent.append(put(upload, page).status_code)

    hooks = depot.client._http.hooks["response"]  # type: ignore[attr-defined]
    hooks.append(resend_after_the_read)
    with pytest.raises(UploadNotFound, match="changed while it was checked"):
        depot.complete_upload(upload.token)
    hooks.remove(resend_after_the_read)
    assert sent == [200]
    assert depot.list() == []
    # Completed again, the page is what is checked: refused and deleted.
    with pytest.raises(ContentTypeNotAllowed):
        depot.complete_upload(upload.token)
    assert objects(depot) == []


def test_hostile_names_and_types_at_presign(depot: FileStorage) -> None:
    upload = depot.presign_upload("a\r\nSet-Cookie: x=1\x00.png")
    assert all("\r" not in v and "\n" not in v for v in upload.headers.values())
    put(upload, PNG)
    stored = depot.get(depot.complete_upload(upload.token))
    assert stored.read() == PNG and stored.content_type == "image/png"
    with pytest.raises(ContentTypeNotAllowed):
        depot.presign_upload("a.png", content_type="image/png\r\nX-Injected: 1")


def test_a_put_of_another_type_than_presigned_stores_the_presigned_type(
    depot: FileStorage,
) -> None:
    """GCS refuses a Content-Type other than the signed one (403); the emulator takes
    it, and the stored file has the presigned type all the same."""
    upload = depot.presign_upload("a.png")
    assert put(upload, PNG, **{"Content-Type": "text/html"}).status_code == 200
    stored = depot.get(depot.complete_upload(upload.token))
    assert stored.content_type == "image/png"
    assert depot.bucket.get_blob(stored.file_id).content_type == "image/png"  # type: ignore[attr-defined]


# --- as GCS answers: through a proxy that enforces the preconditions ----------------


@pytest.fixture
def strict(
    gcs_emulator: str, signing: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PreconditionProxy, FileStorage, FileStorage]]:
    """Two workers of one depot, through ``tests/backends/gcs_preconditions.py``'s proxy."""
    with precondition_proxy(gcs_emulator) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        settings = {**signing, "depot.allowed_types": "image/*"}
        one = DepotManager.configure("one", settings)
        other = DepotManager.configure("other", settings)
        yield proxy, one, other
        one.client._http.close()  # type: ignore[attr-defined]
        other.client._http.close()  # type: ignore[attr-defined]


def test_bytes_sent_again_are_refused_by_the_preconditions(strict: Any) -> None:
    """Where GCS enforces them, the metadata update pinned to the generation checked
    fails, before anything is copied."""
    proxy, depot, _ = strict
    upload = depot.presign_upload("a.png")
    put(upload, PNG)
    page = PAGE.ljust(len(PNG))
    sent: list[int] = []

    def resend_after_the_read(response: Any, *args: Any, **kwargs: Any) -> None:
        if "alt=media" in response.request.url and not sent:
            sent.append(put(upload, page).status_code)

    depot.client._http.hooks["response"].append(resend_after_the_read)
    with pytest.raises(UploadNotFound, match="changed while it was checked"):
        depot.complete_upload(upload.token)
    assert sent == [200] and proxy.refused == 1
    assert depot.list() == []
    with pytest.raises(ContentTypeNotAllowed):
        depot.complete_upload(upload.token)


def test_two_completes_racing_both_get_the_file(strict: Any) -> None:
    """The second's metadata update, or its copy, loses to the first's: it finds the
    file stored, or tries again on the bytes it checked, and gives the same id."""
    proxy, one, other = strict
    upload = one.presign_upload("a.png")
    put(upload, PNG)
    results: list[Any] = []
    start = threading.Barrier(4, timeout=30)

    def complete(depot: Any) -> None:
        start.wait()
        try:
            results.append(depot.complete_upload(upload.token))
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=complete, args=(d,)) for d in (one, other) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [upload.file_id] * 4
    assert objects(one) == [upload.file_id]
    assert one.get(upload.file_id).read() == PNG
