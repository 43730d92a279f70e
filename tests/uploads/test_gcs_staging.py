"""What the chunked uploads of a GCS depot alone have: their objects, and their races.

The chunked upload API itself runs on GCS in ``test_chunked.py``. The races
here go through a proxy that enforces ``ifGenerationMatch`` as GCS does
(``tests/backends/gcs_preconditions.py``): gcp-storage-emulator enforces none.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from depot.exceptions import ContentTypeNotAllowed, InvalidChunk, UploadNotFound
from depot.manager import DepotManager
from tests.backends import settings_to_kwargs
from tests.backends.gcs_preconditions import PreconditionProxy, precondition_proxy
from tests.streams import OneWayStream

gcs_module = pytest.importorskip("depot.io.gcs", reason="the 'gcs' extra is not installed")
GCSStorage = gcs_module.GCSStorage


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def depot(gcs_settings: dict[str, Any]) -> Any:
    return GCSStorage(**settings_to_kwargs(gcs_settings))


@pytest.fixture
def racing(
    gcs_emulator: str, gcs_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PreconditionProxy, Any, Any]]:
    """Two storages of one bucket (two workers), through the precondition proxy."""
    with precondition_proxy(gcs_emulator) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        kwargs = settings_to_kwargs(gcs_settings)
        one, other = GCSStorage(**kwargs), GCSStorage(**kwargs)
        yield proxy, one, other
        one.client._http.close()
        other.client._http.close()


def names(depot: Any) -> list[str]:
    return sorted(blob.name for blob in depot.client.list_blobs(depot.bucket))


def once_after(storage: Any, method: str, needle: str, action: Any) -> None:
    """Run ``action`` once, right after ``storage`` gets the answer to a ``method``
    request whose URL holds ``needle``."""

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        request = response.request
        if request.method == method and needle in request.url:
            storage.client._http.hooks["response"].remove(hook)
            action()

    storage.client._http.hooks["response"].append(hook)


def test_the_objects_of_an_upload(depot: Any) -> None:
    data = os.urandom(1000)
    upload_id = depot.reserve(1000, sha256(data), "application/pdf", "a.pdf")
    depot.write_chunk(upload_id, 600, data[600:])
    depot.write_chunk(upload_id, 0, OneWayStream(data[:600]))
    root = f".depot-uploads/{upload_id}/"
    assert names(depot) == [
        f"{root}chunk-00000000000000000000",
        f"{root}chunk-00000000000000000600",
        f"{root}record.json",
    ]
    assert depot.list() == []  # no file until finalized
    file_id = depot.finalize(upload_id)
    assert names(depot) == [f"{root}record.json", file_id]  # the record keeps the id
    assert depot.finalize(upload_id) == file_id
    assert depot.get(file_id).read() == data
    depot.abort(upload_id)
    assert names(depot) == [file_id]


def test_a_prefixed_depot_keeps_uploads_under_its_prefix(gcs_settings: dict[str, Any]) -> None:
    depot = GCSStorage(**settings_to_kwargs(gcs_settings, prefix="media/"))
    upload_id = depot.reserve(3, sha256(b"abc"))
    depot.write_chunk(upload_id, 0, b"abc")
    assert all(n.startswith(f"media/.depot-uploads/{upload_id}/") for n in names(depot))
    assert depot.get(depot.finalize(upload_id)).read() == b"abc"


def test_a_large_stream_chunk_gets_its_checksum(depot: Any) -> None:
    """A chunk of 8 MiB or more goes as a resumable upload, its checksum added after."""
    data = os.urandom(9 * 1024 * 1024)
    upload_id = depot.reserve(len(data) + 1, sha256(data + b"!"))
    depot.write_chunk(upload_id, 0, OneWayStream(data))
    assert depot.write_chunk(upload_id, 0, data).received == len(data)  # the same again
    with pytest.raises(InvalidChunk, match="differ"):
        depot.write_chunk(upload_id, 0, data[:-1] + b"?")
    depot.write_chunk(upload_id, len(data), b"!")
    assert depot.get(depot.finalize(upload_id)).read() == data + b"!"


def test_direct_uploads_are_not_chunked_uploads(
    gcs_settings: dict[str, Any], gcs_service_account: dict[str, str]
) -> None:
    """Both wait under .depot-uploads/: expire_uploads() takes only the chunked ones."""
    settings = {**gcs_settings, "depot.credentials": gcs_service_account}
    depot = DepotManager.configure("gcs", {**settings, "depot.signing_keys": "k" * 32})
    import requests

    direct = depot.presign_upload("a.bin")
    requests.put(direct.url, data=b"x", headers=direct.headers, timeout=30)
    upload_id = depot.reserve(1, None)
    assert depot.expire_uploads(idle=0) == [upload_id]
    assert names(depot) == [f".depot-uploads/{direct.file_id}"]
    assert depot.get(depot.complete_upload(direct.token)).read() == b"x"


def test_two_writers_of_one_offset_one_wins(racing: Any) -> None:
    """The second writer looked before the first wrote: GCS's precondition decides."""
    proxy, one, other = racing
    upload_id = one.reserve(4, None)
    first = "%2Fchunk-00000000000000000000"  # its lookup, not the listing of chunks
    once_after(other, "GET", first, lambda: one.write_chunk(upload_id, 0, b"mine"))
    with pytest.raises(InvalidChunk, match="differ from the chunk received there before"):
        other.write_chunk(upload_id, 0, b"them")
    assert proxy.refused == 1
    assert one.get(one.finalize(upload_id)).read() == b"mine"


def test_two_finalizes_one_stores(racing: Any) -> None:
    """The second finalize looked for a claim before the first made its own."""
    proxy, one, other = racing
    upload_id = one.reserve(3, sha256(b"abc"))
    one.write_chunk(upload_id, 0, b"abc")
    planned = one._new_file_id()
    once_after(other, "GET", "%2Ffinalizing", lambda: one._staging().claim(upload_id, planned))
    with pytest.raises(UploadNotFound, match="being finalized by another request"):
        other.finalize(upload_id)
    assert proxy.refused == 1
    assert other._staging().claimed(upload_id) == planned  # the first claim stays
    one._staging().release(upload_id)
    assert other.get(other.finalize(upload_id)).read() == b"abc"


def test_a_chunk_of_an_upload_aborted_meanwhile_leaves_nothing(racing: Any) -> None:
    proxy, one, other = racing
    upload_id = one.reserve(3, None)
    once_after(one, "GET", "%2Fchunk-00000000000000000000", lambda: other.abort(upload_id))
    with pytest.raises(UploadNotFound):
        one.write_chunk(upload_id, 0, b"abc")
    assert names(one) == []


def test_finalize_composes_inside_gcs_and_sends_no_byte_again(
    depot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from depot.uploads import _gcs

    monkeypatch.setattr(_gcs, "_COMPOSE_SOURCES", 4)  # GCS's 32, made small to be quick
    data = os.urandom(6 * 5000)
    upload_id = depot.reserve(len(data), "md5:" + hashlib.md5(data).hexdigest(), None, "a.bin")
    for offset in range(0, len(data), 5000):  # 6 chunks: two rounds of compose
        depot.write_chunk(upload_id, offset, data[offset : offset + 5000])
    seen: list[tuple[str, int]] = []
    depot.client._http.hooks["response"].append(
        lambda r, *a, **k: seen.append((r.request.url.split("?")[0], len(r.request.body or b"")))
    )
    file_id = depot.finalize(upload_id)
    composes = [url for url, _ in seen if url.endswith("/compose")]
    assert len(composes) == 3  # 4 + 2, then the two
    assert any("/rewriteTo/" in url for url, _ in seen)
    # The claim, the metadata, the compose lists and the record: no chunk's bytes.
    assert sum(sent for _, sent in seen) < 10_000 < len(data)
    stored = depot.get(file_id)
    assert stored.read() == data
    assert (stored.filename, stored.checksum) == ("a.bin", sha256(data))
    assert names(depot) == [f".depot-uploads/{upload_id}/record.json", file_id]


def test_more_chunks_than_gcs_composes_are_read_back(
    depot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GCS composes an object of at most 1024 components: an upload in more chunks is
    read back and written as create() does (here with the limit lowered to 2)."""
    from depot.uploads import _gcs

    monkeypatch.setattr(_gcs, "_MAX_COMPONENTS", 2)
    upload_id = depot.reserve(3, sha256(b"abc"))
    for offset, byte in enumerate(b"abc"):
        depot.write_chunk(upload_id, offset, bytes([byte]))
    seen: list[str] = []
    depot.client._http.hooks["response"].append(lambda r, *a, **k: seen.append(r.request.url))
    assert depot.get(depot.finalize(upload_id)).read() == b"abc"
    assert not any("/compose" in url for url in seen)


def test_a_refused_upload_leaves_no_assembly(gcs_settings: dict[str, Any]) -> None:
    strict = DepotManager.configure("strict", {**gcs_settings, "depot.allowed_types": "image/*"})
    page = b"<!DOCTYPE html><script>alert(1)</script>"
    upload_id = strict.reserve(len(page), sha256(page), "image/png", "a.png")
    strict.write_chunk(upload_id, 0, page)
    with pytest.raises(ContentTypeNotAllowed):
        strict.finalize(upload_id)
    assert names(strict) == [
        f".depot-uploads/{upload_id}/chunk-00000000000000000000",
        f".depot-uploads/{upload_id}/record.json",
    ]
    assert strict.status(upload_id).complete  # still there, for abort()
    strict.abort(upload_id)
    assert names(strict) == []


def test_finalizes_racing_in_threads_store_one_file(racing: Any) -> None:
    """test_hostile's race, through the proxy: on the emulator alone two claims can both
    be made (it enforces no precondition), and two files stored."""
    proxy, one, other = racing
    data = b"z" * 300_000
    upload_id = one.reserve(len(data), sha256(data))
    one.write_chunk(upload_id, 0, data)
    results: list[Any] = []
    start = threading.Barrier(4, timeout=30)

    def finalize(storage: Any) -> None:
        start.wait()
        try:
            results.append(storage.finalize(upload_id))
        except UploadNotFound as exc:
            results.append(exc)

    threads = [threading.Thread(target=finalize, args=(s,)) for s in (one, other) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = {r for r in results if isinstance(r, str)}
    assert len(ids) == 1 and len(results) == 4
    assert all(isinstance(r, str) or "being finalized" in str(r) for r in results)
    assert one.list() == list(ids)
    assert other.get(other.finalize(upload_id)).read() == data


def test_a_chunk_that_gives_text_is_refused(depot: Any) -> None:
    upload_id = depot.reserve(10, None)

    class Text:
        def read(self, n: int = -1) -> str:
            return "abc"

    with pytest.raises(TypeError, match="binary mode"):
        depot.write_chunk(upload_id, 0, Text())
    assert names(depot) == [f".depot-uploads/{upload_id}/record.json"]


def test_the_claim_of_a_killed_finalize_is_taken_over(racing: Any) -> None:
    """A finalize killed after its claim: the next one, 15 minutes on, takes the claim
    over and stores under its file id; before, nothing finalized the upload again."""
    proxy, one, other = racing
    upload_id = one.reserve(3, sha256(b"abc"))
    one.write_chunk(upload_id, 0, b"abc")
    killed = one._new_file_id()
    assert one._staging().claim(upload_id, killed)  # and then the process died
    with pytest.raises(UploadNotFound, match="being finalized by another request"):
        other.finalize(upload_id)  # a claim younger than the timeout holds
    name = f".depot-uploads/{upload_id}/finalizing"
    old = json.dumps({"file_id": killed, "at": time.time() - 16 * 60}).encode()
    one.bucket.blob(name).upload_from_string(old)  # as if written 16 minutes ago
    assert other.finalize(upload_id) == killed
    assert other.get(killed).read() == b"abc"
    assert other.list() == [killed]


def test_a_slow_finalize_and_the_one_that_took_over_store_one_file(racing: Any) -> None:
    """The first was not dead, only slow: both store under the claim's id, one copy
    wins at GCS (the file's name must be free) and the other finds the file."""
    proxy, one, other = racing
    upload_id = one.reserve(3, sha256(b"abc"))
    one.write_chunk(upload_id, 0, b"abc")
    done: list[str] = []

    def the_other_takes_over() -> None:
        other_staging = other._staging()
        other_staging.claim_timeout = 0  # the first one's claim counts as old
        assert other_staging.claim(upload_id, other._new_file_id())
        done.append(other._store_reserved(upload_id, "", other_staging,
                                          other_staging.chunks(upload_id),
                                          other_staging.record(upload_id), []))  # fmt: skip

    once_after(one, "POST", "/compose", the_other_takes_over)
    assert one.finalize(upload_id) == done[0]
    assert one.list() == done
    assert one.get(done[0]).read() == b"abc"


def test_a_chunk_and_a_finalize_hold_little_memory(depot: Any) -> None:
    """A chunk goes out 8 MiB at a time, as create() sends; finalize() reads the
    composed object in 1 MiB requests. Before, a chunk's blob had google-cloud-storage's
    default chunk size, and a 12 MiB chunk peaked at 24 MiB (16 MiB: 32)."""
    chunk = os.urandom(12 << 20)
    upload_id = depot.reserve(len(chunk), sha256(chunk))
    tracemalloc.start()
    try:
        depot.write_chunk(upload_id, 0, io.BytesIO(chunk))
        written = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        file_id = depot.finalize(upload_id)
        finalized = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written < 11 << 20, f"a 12 MiB chunk peaked at {written / 2**20:.1f} MiB"
    assert finalized < 6 << 20, f"finalize of 12 MiB peaked at {finalized / 2**20:.1f} MiB"
    assert depot.get(file_id).content_length == 12 << 20
