"""Smoke tests of the FastAPI example (examples/fastapi_app.py): in process, and under uvicorn.

In process, requests go through ``httpx.ASGITransport``; the last test runs the
app as its docstring says (``uvicorn examples.fastapi_app:app``) on a free port
and talks to it over a real socket.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from depot.http.signing import EXPIRES, sign_query
from depot.io.local import LocalFileStorage
from depot.manager import DepotManager
from tests.examples.apps import EXAMPLES, REPO
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio

KEY = "fastapi-example-test-key-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def example() -> ModuleType:
    return importlib.import_module("examples.fastapi_app")


@pytest.fixture
async def client(example: ModuleType, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = example.make_app(example.Settings(tmp_path / "data", KEY))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def test_is_under_120_lines() -> None:
    assert len((EXAMPLES / "fastapi_app.py").read_text().splitlines()) < 120


def test_importing_configures_nothing_and_app_is_built_on_demand(
    example: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DepotManager.get(example.PUBLIC) is None
    assert "app" not in vars(example)
    monkeypatch.setenv("FILEBOX_DATA", str(tmp_path))
    monkeypatch.setenv("FILEBOX_SIGNING_KEYS", KEY)
    try:
        app = example.app
        assert example.app is app  # built once
        assert DepotManager.get_middleware() is app
        public = DepotManager.get(example.PUBLIC)
        assert isinstance(public, LocalFileStorage)
        assert public.storage_path == str(tmp_path / example.PUBLIC)
        assert DepotManager.serving_policy(example.PRIVATE).private
    finally:
        vars(example).pop("app", None)
    with pytest.raises(AttributeError, match="has no attribute 'application'"):
        example.application  # noqa: B018


def test_settings_default_to_a_temporary_directory_and_a_fresh_key(example: ModuleType) -> None:
    first, second = example.from_env({}), example.from_env({})
    assert first.data_dir == second.data_dir
    assert first.data_dir.parent == Path(os.path.realpath(first.data_dir.parent))
    assert first.signing_keys != second.signing_keys
    assert len(first.signing_keys) >= 32
    given = example.from_env({"FILEBOX_DATA": "/srv/box", "FILEBOX_SIGNING_KEYS": KEY})
    assert (given.data_dir, given.signing_keys) == (Path("/srv/box"), KEY)


async def test_upload_list_download_range_delete(client: httpx.AsyncClient) -> None:
    assert (await client.get("/files")).json() == []
    content = os.urandom(300_000)
    created = await client.post("/files", files={"file": ("data.bin", content, "x-app/bin")})
    assert created.status_code == 201
    facts = created.json()
    assert (facts["name"], facts["type"], facts["size"]) == ("data.bin", "x-app/bin", 300_000)
    assert facts["url"] == f"/depot/box/{facts['id']}"
    notes = (await client.post("/files", files={"file": ("notes.txt", b"notes\n")})).json()

    listed = (await client.get("/files")).json()
    assert sorted(f["id"] for f in listed) == sorted([facts["id"], notes["id"]])
    download = await client.get(facts["url"])
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["content-length"] == "300000"
    ranged = await client.get(facts["url"], headers={"Range": "bytes=1000-1999"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == "bytes 1000-1999/300000"
    assert ranged.content == content[1000:2000]
    revalidated = await client.get(
        facts["url"], headers={"If-None-Match": download.headers["etag"]}
    )
    assert revalidated.status_code == 304

    assert (await client.delete(f"/files/{facts['id']}")).status_code == 204
    assert (await client.get(facts["url"])).status_code == 404
    assert (await client.delete(f"/files/{facts['id']}")).status_code == 404
    assert [f["id"] for f in (await client.get("/files")).json()] == [notes["id"]]


async def test_the_html_page_lists_the_files_with_names_escaped(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<a href="/docs">API and upload</a>' in page.text
    assert (await client.get("/docs")).status_code == 200
    name = "<script>alert(1)</script>&.html"
    posted = await client.post("/files", files={"file": (name, b"<script>alert(1)</script>")})
    stored = posted.json()
    assert stored["name"] == name
    page = await client.get("/")
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;.html" in page.text
    assert f'<a href="{stored["url"]}">' in page.text
    # The uploaded page is never shown as a page of the site.
    served = await client.get(stored["url"])
    assert served.headers["content-disposition"].startswith("attachment")
    assert served.headers["content-security-policy"].startswith("sandbox")


async def test_a_private_file_is_served_only_at_a_valid_signed_url(
    client: httpx.AsyncClient,
) -> None:
    secret = os.urandom(10_000)
    posted = (await client.post("/private", files={"file": ("secret.bin", secret)})).json()
    file_id = posted["id"]
    plain = await client.get(f"/depot/private/{file_id}")
    assert plain.status_code == 403
    assert secret not in plain.content

    link = (await client.get(posted["link"], params={"expires_in": 60})).json()
    assert link["expires_in"] == 60
    signed = await client.get(link["url"])
    assert (signed.status_code, signed.content) == (200, secret)
    # No shared cache keeps it, nor any cache past the link's life.
    cache_control = signed.headers["cache-control"]
    assert "private" in cache_control
    assert 0 <= int(cache_control.split("max-age=")[1].split(",")[0]) <= 60
    url = urlsplit(link["url"])
    assert url.path == f"/depot/private/{file_id}"

    # The signature binds the expiry and the file: moving either breaks it.
    query = dict(parse_qsl(url.query))
    later = {**query, EXPIRES: str(int(query[EXPIRES]) + 3600)}
    assert (await client.get(f"{url.path}?{urlencode(later)}")).status_code == 403
    other = (await client.post("/private", files={"file": ("other.bin", b"other")})).json()
    assert (await client.get(f"/depot/private/{other['id']}?{url.query}")).status_code == 403

    keys = DepotManager.serving_policy("private").keys
    expired = sign_query(keys, "private", file_id, int(time.time()) - 1)
    assert (await client.get(f"{url.path}?{expired}")).status_code == 403
    wrong_key = sign_query([b"another-key-of-32-bytes-or-more!"], "private", file_id, 2**31)
    assert (await client.get(f"{url.path}?{wrong_key}")).status_code == 403
    valid = sign_query(keys, "private", file_id, int(time.time()) + 60)
    assert (await client.get(f"{url.path}?{valid}")).content == secret


@pytest.mark.parametrize(
    "file_id",
    ["not-an-id", "%2e%2e%2fetc", "a" * 5000, "%00", "0" * 32, "%E2%80%AE"],
)
async def test_odd_ids_are_404(client: httpx.AsyncClient, file_id: str) -> None:
    assert (await client.delete(f"/files/{file_id}")).status_code == 404
    assert (await client.get(f"/private/{file_id}/link")).status_code == 404
    assert (await client.get(f"/depot/box/{file_id}")).status_code == 404


async def test_a_link_for_a_missing_file_or_a_bad_expiry_is_refused(
    client: httpx.AsyncClient,
) -> None:
    missing = "9d1f2c1e-3a3b-11ef-9c1a-0242ac120002"
    assert (await client.get(f"/private/{missing}/link")).status_code == 404
    posted = (await client.post("/private", files={"file": ("a.txt", b"a")})).json()
    for expires_in in ("0", "-5", "86401", "soon"):
        answer = await client.get(posted["link"], params={"expires_in": expires_in})
        assert answer.status_code == 422, expires_in
    # A public file has no signed link: the link is only for the private depot.
    public = (await client.post("/files", files={"file": ("b.txt", b"b")})).json()
    assert (await client.get(f"/private/{public['id']}/link")).status_code == 404


async def test_concurrent_uploads_are_all_stored_and_listed(client: httpx.AsyncClient) -> None:
    contents = [os.urandom(50_000 + n) for n in range(12)]

    async def upload(n: int) -> Any:
        answer = await client.post("/files", files={"file": (f"f{n}.bin", contents[n])})
        assert answer.status_code == 201
        return answer.json()

    posted = await asyncio.gather(*(upload(n) for n in range(len(contents))))
    assert len({facts["id"] for facts in posted}) == len(contents)
    listed = {facts["id"]: facts for facts in (await client.get("/files")).json()}
    assert listed.keys() == {facts["id"] for facts in posted}
    for n, facts in enumerate(posted):
        assert listed[facts["id"]]["size"] == len(contents[n])
        assert (await client.get(facts["url"])).content == contents[n]


async def test_a_request_without_a_file_is_refused_and_stores_nothing(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/files")).status_code == 422
    assert (await client.post("/files", data={"file": "not a file"})).status_code == 422
    assert (await client.post("/private", data={"other": "x"})).status_code == 422
    assert (await client.get("/files")).json() == []


def test_under_uvicorn_over_a_real_socket(tmp_path: Path) -> None:
    """``uvicorn examples.fastapi_app:app`` as documented, and a real HTTP client."""

    def command(port: int) -> list[str]:
        app_dir = ["--app-dir", str(REPO)]
        host = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        return [sys.executable, "-m", "uvicorn", *app_dir, *host, "examples.fastapi_app:app"]

    env = {"FILEBOX_DATA": str(tmp_path / "data"), "FILEBOX_SIGNING_KEYS": KEY}
    content = os.urandom(3 * 1024 * 1024 + 7)
    server = ServerProcess("uvicorn fastapi_app", command, tmp_path, env)
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        facts: Any = http.post("/files", files={"file": ("big.bin", content)}).json()
        assert facts["size"] == len(content)
        assert [f["id"] for f in http.get("/files").json()] == [facts["id"]]
        with http.stream("GET", facts["url"]) as download:
            assert download.status_code == 200
            assert b"".join(download.iter_bytes()) == content
        ranged = http.get(facts["url"], headers={"Range": "bytes=-7"})
        assert (ranged.status_code, ranged.content) == (206, content[-7:])

        posted = http.post("/private", files={"file": ("s.txt", b"secret\n")}).json()
        assert http.get(f"/depot/private/{posted['id']}").status_code == 403
        url = http.get(posted["link"]).json()["url"]
        assert http.get(url).content == b"secret\n"

        assert http.delete(f"/files/{facts['id']}").status_code == 204
        assert http.get(facts["url"]).status_code == 404
    assert (tmp_path / "data" / "box").is_dir()
