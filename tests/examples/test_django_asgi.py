"""Django on ASGI, as docs/async.rst says: ``make_asgi_middleware(get_asgi_application())``.

Django is configured in this process from the settings below (``ROOT_URLCONF``
is this module), once; its views store a file, one with ``create()``, one with
``await acreate()``, and answer the file's URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from depot.manager import DepotManager

django = pytest.importorskip("django", reason="Django is not installed: pip install -e '.[test]'")

from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

pytestmark = pytest.mark.anyio


def sync_view(request: HttpRequest) -> JsonResponse:
    depot = DepotManager.get("media")
    assert depot is not None
    file_id = depot.create(b"stored by a sync view\n", "sync.txt")
    return JsonResponse({"url": DepotManager.url_for(f"media/{file_id}")})


async def async_view(request: HttpRequest) -> JsonResponse:
    depot = DepotManager.get("media")
    assert depot is not None
    file_id = await depot.acreate(b"stored by an async view\n", "async.txt")
    return JsonResponse({"url": DepotManager.url_for(f"media/{file_id}")})


urlpatterns = [path("sync/", sync_view), path("async/", async_view)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="depot-tests-only",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
            DATABASES={},
        )
    from django.core.asgi import get_asgi_application

    DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    # The snippet of docs/async.rst.
    application = DepotManager.make_asgi_middleware(get_asgi_application())
    transport = httpx.ASGITransport(app=application, root_path="/site")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize(("view", "content"), [("sync", b"a sync"), ("async", b"an async")])
async def test_a_view_stores_a_file_and_depot_serves_it(
    client: httpx.AsyncClient, view: str, content: bytes
) -> None:
    answer = await client.get(f"/site/{view}/")
    assert answer.status_code == 200
    url: Any = answer.json()["url"]
    # The server's root_path is part of the URL the view built.
    assert url.startswith("/site/depot/media/")
    served = await client.get(url)
    assert served.status_code == 200
    assert served.content == b"stored by " + content + b" view\n"
    assert served.headers["content-type"].startswith("text/plain")
    ranged = await client.get(url, headers={"Range": "bytes=0-5"})
    assert (ranged.status_code, ranged.content) == (206, b"stored")


async def test_other_paths_reach_django(client: httpx.AsyncClient) -> None:
    missing = await client.get("/site/no-such-page/")
    assert missing.status_code == 404
    assert "Not Found" in missing.text
    assert "x-content-type-options" not in {k.lower() for k in missing.headers}
    absent = await client.get("/site/depot/media/9d1f2c1e-3a3b-11ef-9c1a-0242ac120002")
    assert absent.status_code == 404
    assert absent.headers["x-content-type-options"] == "nosniff"
