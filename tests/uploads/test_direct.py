"""Direct uploads to S3 (moto's server): a presigned POST or PUT from requests, then the check."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any

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

KEYS = "a-signing-key-of-32-characters-!! another-key-at-least-16"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x03\x00\x08\xfc\x02\xfe\xa7"
    b"\x9a\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def depot(s3_settings: dict[str, Any]) -> FileStorage:
    return DepotManager.configure(
        "media",
        {**s3_settings, "depot.signing_keys": KEYS, "depot.allowed_types": "image/*"},
    )


def post(upload: Any, data: bytes, content_type: str = "image/png") -> requests.Response:
    fields = dict(upload.fields)
    return requests.post(
        upload.url, data=fields, files={"file": ("x", data, content_type)}, timeout=30
    )


def test_a_presigned_post_becomes_a_stored_file(depot: FileStorage) -> None:
    upload = depot.presign_upload("dot.png", max_size=10_000)
    assert upload.method == "POST"
    assert upload.fields["Content-Type"] == "image/png"
    answer = post(upload, PNG)
    assert answer.status_code in (200, 204), answer.text
    # Not a file until completed: the staging key is no file id.
    assert upload.file_id not in depot.list()
    file_id = depot.complete_upload(upload.token)
    assert file_id == upload.file_id
    stored = depot.get(file_id)
    assert stored.read() == PNG
    assert (stored.filename, stored.content_type) == ("dot.png", "image/png")
    assert stored.checksum == "sha256:" + hashlib.sha256(PNG).hexdigest()
    assert depot.list() == [file_id]
    assert depot.complete_upload(upload.token) == file_id  # asked again: the same file


def test_a_presigned_put_with_a_checksum(depot: FileStorage) -> None:
    checksum = "sha256:" + hashlib.sha256(PNG).hexdigest()
    upload = depot.presign_upload("a.png", checksum=checksum, method="PUT")
    answer = requests.put(upload.url, data=PNG, headers=upload.headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert depot.get(depot.complete_upload(upload.token)).checksum == checksum


def test_what_arrived_is_refused_and_deleted(depot: FileStorage, s3_client: Any) -> None:
    # A page sent under an image's type: sniffed, refused, removed.
    page = b"<!DOCTYPE html><script>alert(1)</script>"
    upload = depot.presign_upload("cat.png", max_size=10_000)
    assert post(upload, page).status_code in (200, 204)
    with pytest.raises(ContentTypeNotAllowed):
        depot.complete_upload(upload.token)
    # Larger than presigned: a PUT's signature cannot bound the size; the check does.
    upload = depot.presign_upload("big.png", max_size=100, method="PUT")
    big = PNG + os.urandom(500)
    requests.put(upload.url, data=big, headers=upload.headers, timeout=30)
    with pytest.raises(UploadTooLarge, match="at most 100 bytes"):
        depot.complete_upload(upload.token)
    # Not the checksum it was presigned with.
    upload = depot.presign_upload("c.png", checksum="sha256:" + "0" * 64, method="PUT")
    requests.put(upload.url, data=PNG, headers=upload.headers, timeout=30)
    with pytest.raises(ChecksumMismatch):
        depot.complete_upload(upload.token)
    assert depot.list() == []
    bucket = depot._bucket  # type: ignore[attr-defined]
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    with pytest.raises(UploadNotFound, match="Nothing has arrived"):
        depot.complete_upload(upload.token)


def test_tokens_are_signed_and_expire(depot: FileStorage, s3_settings: dict[str, Any]) -> None:
    upload = depot.presign_upload("a.png", expires_in=1)
    body, signature = upload.token.split(".")
    for bad in (
        body + "." + signature[::-1],
        body[:-2] + "AA." + signature,
        "nonsense",
        "",
        "a.b.c",
        "é." + signature,
        "x" * 10_000,
    ):
        with pytest.raises(UploadNotFound, match="not valid"):
            depot.complete_upload(bad)
    time.sleep(1.2)
    with pytest.raises(UploadNotFound, match="expired"):
        depot.complete_upload(upload.token)
    # Another depot, with other keys, does not take this depot's tokens.
    other = DepotManager.configure(
        "other", {**s3_settings, "depot.signing_keys": "another-key-of-32-characters-!!!!"}
    )
    fresh = depot.presign_upload("a.png")
    with pytest.raises(UploadNotFound):
        other.complete_upload(fresh.token)


def test_rotated_keys_still_complete(depot: FileStorage, s3_settings: dict[str, Any]) -> None:
    upload = depot.presign_upload("a.png")
    post(upload, PNG)
    DepotManager.reset()
    rotated = DepotManager.configure(
        "media",
        {**s3_settings, "depot.signing_keys": "a-brand-new-first-key-0123456789 " + KEYS},
    )
    assert rotated.get(rotated.complete_upload(upload.token)).read() == PNG


def test_bad_presign_requests_say_what_to_give(
    depot: FileStorage, s3_settings: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="method is 'POST'"):
        depot.presign_upload("a.png", method="GET")
    with pytest.raises(ValueError, match="expires_in"):
        depot.presign_upload("a.png", expires_in=8 * 24 * 3600)
    with pytest.raises(ValueError, match="checksum"):
        depot.presign_upload("a.png", checksum="md5:abc")
    with pytest.raises(ContentTypeNotAllowed):
        depot.presign_upload("page.html")
    keyless = DepotManager.configure("keyless", s3_settings)
    with pytest.raises(ConfigurationError, match="signing_keys"):
        keyless.presign_upload("a.png")


def test_local_and_memory_depots_point_to_tus(memory_settings: dict[str, Any]) -> None:
    storage = DepotManager.configure("m", memory_settings)
    with pytest.raises(NotImplementedError, match="depot.uploads.tus"):
        storage.presign_upload("a.png")


def test_a_post_is_bounded_by_its_policy_and_by_the_check(depot: FileStorage) -> None:
    upload = depot.presign_upload("big.png", max_size=100)
    # The signed policy S3 enforces: this key, this type, at most 100 bytes.
    policy = json.loads(base64.b64decode(upload.fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 0, 100] in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert any(c == {"key": upload.fields["key"]} for c in conditions)
    answer = post(upload, PNG + os.urandom(500))
    if answer.status_code in (200, 204):  # moto does not enforce the range; S3 does
        with pytest.raises(UploadTooLarge):
            depot.complete_upload(upload.token)
    else:
        assert answer.status_code == 400
        with pytest.raises(UploadNotFound):
            depot.complete_upload(upload.token)
    assert depot.list() == []


# --- as a hostile client ------------------------------------------------------------


def test_bytes_sent_again_while_the_check_runs_are_never_stored(
    depot: FileStorage, s3_client: Any, patched: pytest.MonkeyPatch
) -> None:
    """The presigned PUT is valid until it expires: a client sends a PNG, then, while
    complete_upload() checks it, a page to the same key.

    Before, the copy that follows the check copied whatever was there: the page,
    stored as a checked image/png.
    """
    upload = depot.presign_upload("a.png", method="PUT")
    requests.put(upload.url, data=PNG, headers=upload.headers, timeout=30)
    page = b"<!DOCTYPE html><script>alert(1)</script>"
    client = depot._client  # type: ignore[attr-defined]
    real_copy = client.copy_object  # one request below 5 GiB

    def copy_after_a_resend(*args: Any, **kwargs: Any) -> Any:
        requests.put(upload.url, data=page, headers=upload.headers, timeout=30)
        return real_copy(*args, **kwargs)

    patched.setattr(client, "copy_object", copy_after_a_resend)
    with pytest.raises(UploadNotFound, match="changed while it was checked"):
        depot.complete_upload(upload.token)
    patched.undo()
    assert depot.list() == []
    # Completed again, the page is what is checked: refused and deleted.
    with pytest.raises(ContentTypeNotAllowed):
        depot.complete_upload(upload.token)
    assert depot.list() == []
    assert s3_client.list_objects_v2(Bucket=depot._bucket).get("KeyCount", 0) == 0  # type: ignore[attr-defined]


def test_two_completes_of_one_token_both_get_the_file(
    depot: FileStorage, patched: pytest.MonkeyPatch
) -> None:
    """The second complete reads the staging key after the first deleted it.

    Before, it said "Nothing has arrived for this upload" though the file was stored.
    """
    upload = depot.presign_upload("a.png", method="PUT")
    requests.put(upload.url, data=PNG, headers=upload.headers, timeout=30)
    client = depot._client  # type: ignore[attr-defined]
    real_get = client.get_object
    first: list[str] = []

    def get_after_the_other_finished(**kwargs: Any) -> Any:
        if not first:
            patched.setattr(client, "get_object", real_get)
            first.append(depot.complete_upload(upload.token))
        return real_get(**kwargs)

    patched.setattr(
        depot, "_stat", lambda file_id, real=depot._stat: None if not first else real(file_id)
    )  # type: ignore[attr-defined]
    patched.setattr(client, "get_object", get_after_the_other_finished)
    assert depot.complete_upload(upload.token) == first[0] == upload.file_id
    assert depot.list() == [upload.file_id]


def test_tokens_of_another_prefix_or_bucket_are_refused(
    depot: FileStorage, s3_settings: dict[str, Any], s3_client: Any
) -> None:
    upload = depot.presign_upload("a.png", method="PUT")
    requests.put(upload.url, data=PNG, headers=upload.headers, timeout=30)
    prefixed = DepotManager.configure(
        "prefixed", {**s3_settings, "depot.signing_keys": KEYS, "depot.prefix": "other/"}
    )
    with pytest.raises(UploadNotFound, match="another depot"):
        prefixed.complete_upload(upload.token)
    s3_client.create_bucket(Bucket="another-bucket")
    elsewhere = DepotManager.configure(
        "elsewhere", {**s3_settings, "depot.signing_keys": KEYS, "depot.bucket": "another-bucket"}
    )
    with pytest.raises(UploadNotFound, match="another depot"):
        elsewhere.complete_upload(upload.token)
    assert prefixed.list() == [] and elsewhere.list() == []
    assert depot.get(depot.complete_upload(upload.token)).read() == PNG


def test_replaying_a_token_after_the_file_was_deleted(depot: FileStorage) -> None:
    upload = depot.presign_upload("a.png", method="PUT")
    requests.put(upload.url, data=PNG, headers=upload.headers, timeout=30)
    file_id = depot.complete_upload(upload.token)
    depot.delete(file_id)
    with pytest.raises(UploadNotFound, match="Nothing has arrived"):
        depot.complete_upload(upload.token)
    assert depot.list() == []


def test_completing_before_the_bytes_arrive(depot: FileStorage) -> None:
    upload = depot.presign_upload("a.png", method="PUT")
    with pytest.raises(UploadNotFound, match="Nothing has arrived"):
        depot.complete_upload(upload.token)
    requests.put(upload.url, data=PNG, headers=upload.headers, timeout=30)
    assert depot.get(depot.complete_upload(upload.token)).read() == PNG


def test_a_put_of_another_type_than_presigned(depot: FileStorage) -> None:
    upload = depot.presign_upload("a.png", method="PUT")
    headers = {**upload.headers, "Content-Type": "text/html"}
    answer = requests.put(upload.url, data=PNG, headers=headers, timeout=30)
    if answer.status_code == 200:  # moto does not check the signed header; S3 refuses
        file_id = depot.complete_upload(upload.token)
        assert depot.get(file_id).content_type == "image/png"  # the presigned type
    else:
        assert answer.status_code == 403
        with pytest.raises(UploadNotFound):
            depot.complete_upload(upload.token)


def test_hostile_names_and_types_at_presign(depot: FileStorage) -> None:
    upload = depot.presign_upload("a\r\nSet-Cookie: x=1\x00.png", method="PUT")
    assert all("\r" not in v and "\n" not in v for v in upload.headers.values())
    requests.put(upload.url, data=PNG, headers=upload.headers, timeout=30)
    stored = depot.get(depot.complete_upload(upload.token))
    assert stored.read() == PNG and stored.content_type == "image/png"
    with pytest.raises(ContentTypeNotAllowed):
        depot.presign_upload("a.png", content_type="image/png\r\nX-Injected: 1")


def test_an_upload_over_its_size_is_refused_unread(
    depot: FileStorage, s3_client: Any, patched: pytest.MonkeyPatch
) -> None:
    upload = depot.presign_upload("big.png", max_size=100, method="PUT")
    requests.put(upload.url, data=PNG + os.urandom(300_000), headers=upload.headers, timeout=30)
    client = depot._client  # type: ignore[attr-defined]
    real_get = client.get_object
    read: list[int] = []

    def counting_get(**kwargs: Any) -> Any:
        answer = real_get(**kwargs)
        real_read = answer["Body"].read
        answer["Body"].read = lambda n=-1: read.append(n) or real_read(n)
        return answer

    patched.setattr(client, "get_object", counting_get)
    with pytest.raises(UploadTooLarge, match="at most 100 bytes"):
        depot.complete_upload(upload.token)
    assert read == []  # before, all of it was read, then refused
    bucket = depot._bucket  # type: ignore[attr-defined]
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_an_object_over_copy_objects_limit_is_copied_in_parts(
    depot: FileStorage, patched: pytest.MonkeyPatch
) -> None:
    """Above 5 GiB S3 refuses CopyObject: boto3's copy in parts takes over (the limit
    lowered here, as 5 GiB has no place in a test)."""
    from depot.io import _s3direct

    patched.setattr(_s3direct, "MAX_COPY_OBJECT", len(PNG) - 1)
    client = depot._client  # type: ignore[attr-defined]
    managed = []
    real_copy = client.copy

    def copy(*args: Any, **kwargs: Any) -> Any:
        managed.append(args[2])
        return real_copy(*args, **kwargs)

    patched.setattr(client, "copy", copy)
    upload = depot.presign_upload("a.png", method="PUT")
    requests.put(upload.url, data=PNG, headers=upload.headers, timeout=30)
    file_id = depot.complete_upload(upload.token)
    assert managed == [depot._key(file_id)]  # type: ignore[attr-defined]
    stored = depot.get(file_id)
    assert (stored.read(), stored.content_type) == (PNG, "image/png")
