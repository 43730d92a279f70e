"""The S3 backend, against moto's S3 server on 127.0.0.1 (or the S3 of DEPOT_TEST_S3_ENDPOINT).

moto runs as its own process (``python -m moto.server``), so every request is
real HTTP and a test can stop and restart a server of its own. Set
``DEPOT_TEST_S3_ENDPOINT`` (with ``DEPOT_TEST_S3_ACCESS_KEY``,
``DEPOT_TEST_S3_SECRET_KEY`` and ``DEPOT_TEST_S3_REGION``) to run the suites
against another server, MinIO or AWS itself; each test gets a bucket of its own,
emptied and removed afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ServerProcess


class MotoServer(ServerProcess):
    """moto's S3 server in a subprocess on 127.0.0.1."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        if importlib.util.find_spec("moto") is None:
            pytest.skip("moto[server] is not installed: pip install -e '.[test]'")
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p"]
        super().__init__("moto server", lambda port: [*command, str(port)], log_dir, env)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``endpoint_url``, ``access_key_id``, ``secret_access_key``, ``region_name`` of the S3."""
    pytest.importorskip("boto3", reason="the 's3' extra is not installed")
    given = os.environ.get("DEPOT_TEST_S3_ENDPOINT")
    if given:
        yield {
            "endpoint_url": given,
            "access_key_id": os.environ.get("DEPOT_TEST_S3_ACCESS_KEY", ""),
            "secret_access_key": os.environ.get("DEPOT_TEST_S3_SECRET_KEY", ""),
            "region_name": os.environ.get("DEPOT_TEST_S3_REGION", "us-east-1"),
        }
        return
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield {
            "endpoint_url": server.url,
            "access_key_id": "depot-test-key",
            "secret_access_key": "depot-test-secret",
            "region_name": "us-east-1",
        }


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: dict[str, str]) -> Any:
    """A plain boto3 client for the test S3, to put and look at raw objects."""
    return client_for(s3_endpoint)


def client_for(endpoint: dict[str, str]) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=endpoint["access_key_id"] or None,
        aws_secret_access_key=endpoint["secret_access_key"] or None,
        region_name=endpoint["region_name"],
    ).client("s3", endpoint_url=endpoint["endpoint_url"])


def remove_bucket(client: Any, bucket: str) -> None:
    """Empty and delete a bucket (abandoned multipart uploads too), if it exists."""
    from botocore.exceptions import ClientError

    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ()):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise


@pytest.fixture
def s3_settings(s3_endpoint: dict[str, str], s3_client: Any) -> Iterator[dict[str, Any]]:
    """A private depot in a new bucket, removed after the test."""
    bucket = f"depot-test-{uuid.uuid4().hex[:16]}"
    yield {
        "depot.backend": "s3",
        "depot.bucket": bucket,
        "depot.policy": "private",
        **{f"depot.{key}": value for key, value in s3_endpoint.items()},
    }
    remove_bucket(s3_client, bucket)
