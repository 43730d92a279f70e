"""Private depots, signed URLs and ``authorize`` through both front ends, on every backend.

A refusal is a 403 decided before any lookup: the same answer whether the file
exists or not. Answers that depended on who asked are ``Cache-Control: private``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from depot._settings import serving_policy_from_settings
from depot.http.request import RequestFacts
from depot.io.memory import MemoryFileStorage, MemoryStoredFile
from depot.manager import DepotManager
from depot.middleware import DepotMiddleware
from tests import frontends
from tests.frontends import Client, FrontEnd

KEY, OLD_KEY = "new-key-" + "n" * 24, "old-key-" + "o" * 24
MISSING = "00000000-0000-4000-8000-000000000000"


def wrapped_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


@pytest.fixture
def private(backend_settings: dict[str, Any]) -> Any:
    """A private depot 'default' of the backend under test, with one file."""
    settings = {**backend_settings, "depot.private": "true", "depot.signing_keys": KEY}
    depot = DepotManager.configure("default", settings)
    return depot.create(b"secret bytes", filename="secret.txt", content_type="text/plain")


front_end = frontends.front_end  # the fixture: every test on WSGI and on ASGI


@pytest.fixture
def make(front_end: FrontEnd) -> Any:
    """A client of the front end under test, its middleware registered (for url_for)."""

    def make(**options: Any) -> Client:
        return front_end.client(front_end.make_middleware(**options))

    return make


def assert_forbidden(response: Any) -> None:
    assert response.status_int == 403
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.body in (b"Forbidden.", b"")


@pytest.mark.parametrize("method", ["get", "head"])
def test_private_depot_refuses_unsigned_urls_whether_the_file_exists_or_not(
    make: Any, private: str, method: str
) -> None:
    app = make()
    found = getattr(app, method)(f"/depot/default/{private}", status=403)
    missing = getattr(app, method)(f"/depot/default/{MISSING}", status=403)
    assert_forbidden(found)
    assert_forbidden(missing)
    assert found.headers == missing.headers and found.body == missing.body


def test_signed_url_serves_a_private_file_cached_privately_no_longer_than_it_lives(
    make: Any,
    private: str,
) -> None:
    app = make(cache_max_age=3600)
    url = DepotManager.url_for(f"default/{private}", expires_in=120)
    response = app.get(url, status=200)
    assert response.body == b"secret bytes"
    control = response.headers["Cache-Control"]
    assert control.startswith("private, max-age=")
    assert 110 <= int(control.rpartition("=")[2]) <= 120
    etag = response.headers["ETag"]
    revalidated = app.get(url, headers={"If-None-Match": etag}, status=304)
    assert revalidated.headers["Cache-Control"].startswith("private, max-age=")
    ranged = app.get(url, headers={"Range": "bytes=0-5"}, status=206)
    assert ranged.body == b"secret"


def test_signed_url_of_a_missing_file_is_a_404(make: Any, private: str) -> None:
    app = make()
    app.get(DepotManager.url_for(f"default/{MISSING}", expires_in=60), status=404)


def test_expired_signed_url_is_refused(
    make: Any, private: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make()
    url = DepotManager.url_for(f"default/{private}", expires_in=60)
    later = time.time() + 61
    monkeypatch.setattr("depot.http.access.time.time", lambda: later)
    assert_forbidden(app.get(url, status=403))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.replace("expires=", "expires=9"),
        lambda url: url[:-1] + ("A" if url[-1] != "A" else "B"),
        lambda url: url.split("&")[0],  # the signature dropped
        lambda url: url + "&signature=" + "A" * 43,  # a second signature
    ],
)
def test_tampered_signed_url_is_refused(make: Any, private: str, tamper) -> None:
    app = make()
    url = DepotManager.url_for(f"default/{private}", expires_in=60)
    assert_forbidden(app.get(tamper(url), status=403))


def test_signature_of_another_file_is_refused(make: Any, private: str) -> None:
    other = DepotManager.get("default").create(b"other")
    app = make()
    query = DepotManager.url_for(f"default/{other}", expires_in=60).partition("?")[2]
    assert_forbidden(app.get(f"/depot/default/{private}?{query}", status=403))


def test_wrong_key_and_rotated_key(
    make: Any, backend_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = {**backend_settings, "depot.private": "true", "depot.signing_keys": OLD_KEY}
    file_id = DepotManager.configure("default", old).create(b"x")
    app = make()
    link = DepotManager.url_for(f"default/{file_id}", expires_in=60)

    def keys(value: str) -> None:  # the depot's settings changed, its files kept
        settings = {**old, "depot.signing_keys": value}
        monkeypatch.setitem(
            DepotManager._policies, "default", serving_policy_from_settings(settings)
        )

    keys(f"{KEY} {OLD_KEY}")  # rotated: the new key first, the old one still verifying
    assert app.get(link, status=200).body == b"x"
    new_link = DepotManager.url_for(f"default/{file_id}", expires_in=60)
    keys(KEY)  # the old key dropped: links signed with it stop working
    assert_forbidden(app.get(link, status=403))
    assert app.get(new_link, status=200).body == b"x"
    keys("wrong-key-" + "w" * 20)
    assert_forbidden(app.get(new_link, status=403))


def test_public_depot_serves_plain_urls_and_refuses_bad_signatures(
    make: Any,
    backend_settings: dict[str, Any],
) -> None:
    settings = {**backend_settings, "depot.signing_keys": KEY}
    file_id = DepotManager.configure("default", settings).create(b"open")
    app = make()
    plain = app.get(f"/depot/default/{file_id}?v=2", status=200)
    assert plain.headers["Cache-Control"].startswith("public, ")
    signed = DepotManager.url_for(f"default/{file_id}", expires_in=60)
    assert app.get(signed, status=200).headers["Cache-Control"].startswith("public, max-age=")
    assert_forbidden(app.get(signed.replace("expires=", "expires=1"), status=403))


# --- authorize ----------------------------------------------------------------------


@pytest.fixture
def public(backend_settings: dict[str, Any]) -> str:
    depot = DepotManager.configure("default", backend_settings)
    return depot.create(b"mine", filename="mine.txt", content_type="text/plain")


def test_authorize_sees_the_request_and_decides(make: Any, public: str) -> None:
    seen: list[tuple[RequestFacts, str, str]] = []

    def authorize(request: RequestFacts, depot_name: str, file_id: str) -> bool:
        seen.append((request, depot_name, file_id))
        return request.headers.get("cookie") == "user=owner"

    DepotManager.alias("files", "default")
    app = make(authorize=authorize)
    allowed = app.get(f"/depot/files/{public}", headers={"Cookie": "user=owner"}, status=200)
    assert allowed.body == b"mine"
    assert allowed.headers["Cache-Control"].startswith("private, max-age=")
    request, depot_name, file_id = seen[-1]
    assert (request.method, depot_name, file_id) == ("GET", "default", public)
    assert request.path == f"/depot/files/{public}"
    assert request.headers["cookie"] == "user=owner"
    assert_forbidden(app.get(f"/depot/files/{public}", status=403))
    assert_forbidden(app.get(f"/depot/files/{MISSING}", status=403))
    # Requests that are not for a file never reach it.
    count = len(seen)
    assert app.get("/elsewhere").body == b"the application"
    app.get("/depot/nowhere/x", status=404)
    assert len(seen) == count


def test_authorize_can_open_a_private_depot_but_a_signature_needs_no_authorize(
    make: Any,
    private: str,
) -> None:
    calls: list[str] = []

    def owner_only(request: RequestFacts, depot_name: str, file_id: str) -> bool:
        calls.append(file_id)
        return request.headers.get("authorization") == "Bearer owner"

    app = make(authorize=owner_only)
    app.get(f"/depot/default/{private}", headers={"Authorization": "Bearer owner"}, status=200)
    assert_forbidden(app.get(f"/depot/default/{private}", status=403))
    assert len(calls) == 2
    app.get(DepotManager.url_for(f"default/{private}", expires_in=60), status=200)
    assert len(calls) == 2  # the signature was the grant


def test_failing_authorize_is_a_logged_503(
    make: Any, public: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: RequestFacts, depot_name: str, file_id: str) -> bool:
        raise RuntimeError("session store down")

    app = make(authorize=broken)
    with caplog.at_level(logging.ERROR, logger="depot.middleware"):
        response = app.get(f"/depot/default/{public}", status=503)
    assert b"session store down" not in response.body
    assert "authorize" in caplog.text and "session store down" in caplog.text


def test_wsgi_refuses_an_async_authorize() -> None:
    async def authorize(request: RequestFacts, depot_name: str, file_id: str) -> bool:
        return True

    with pytest.raises(TypeError, match="async function"):
        DepotMiddleware(wrapped_app, authorize=authorize)
    with pytest.raises(TypeError, match="must be a function"):
        DepotMiddleware(wrapped_app, authorize="yes")  # type: ignore[arg-type]


def test_private_redirects_are_never_cached(
    make: Any,
) -> None:
    class PublicFile(MemoryStoredFile):
        public_url = "https://cdn.example.com/x.png"

    class PublicStorage(MemoryFileStorage):
        def get(self, file_or_id):
            plain = super().get(file_or_id)
            return PublicFile(self.files, plain.file_id, self.files[plain.file_id])

    DepotManager.configure(
        "cdn", {"depot.backend": "memory", "depot.private": "1", "depot.signing_keys": KEY}
    )
    storage = PublicStorage()
    DepotManager._depots["cdn"] = storage
    file_id = storage.create(b"x")
    app = make()
    app.get(f"/depot/cdn/{file_id}", status=403)
    response = app.get(DepotManager.url_for(f"cdn/{file_id}", expires_in=60), status=302)
    assert response.headers["Location"] == "https://cdn.example.com/x.png"
    assert response.headers["Cache-Control"] == "no-store"


# --- authorize under ASGI -----------------------------------------------------------


def asgi_client(**options: Any) -> Client:
    return FrontEnd("asgi").client(FrontEnd("asgi").make_middleware(**options))


def test_async_authorize_is_awaited_before_the_lookup(public: str) -> None:
    calls: list[str] = []

    async def authorize(request: RequestFacts, depot_name: str, file_id: str) -> bool:
        calls.append(file_id)
        return request.headers.get("cookie") == "user=owner"

    app = asgi_client(authorize=authorize)
    assert app.get(f"/depot/default/{public}", headers={"Cookie": "user=owner"}).body == b"mine"
    assert_forbidden(app.get(f"/depot/default/{public}", status=403))
    assert_forbidden(app.get(f"/depot/default/{MISSING}", status=403))
    assert calls == [public, public, MISSING]


def test_async_authorize_is_not_asked_when_a_signature_decides(private: str) -> None:
    calls: list[str] = []

    async def authorize(request: RequestFacts, depot_name: str, file_id: str) -> bool:
        calls.append(file_id)
        return False

    app = asgi_client(authorize=authorize)
    signed = DepotManager.url_for(f"default/{private}", expires_in=60)
    assert app.get(signed, status=200).body == b"secret bytes"
    assert_forbidden(app.get(signed.replace("expires=", "expires=1"), status=403))
    assert calls == []


def test_failing_async_authorize_is_a_logged_503(
    public: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: RequestFacts, depot_name: str, file_id: str) -> bool:
        raise RuntimeError("session store down")

    app = asgi_client(authorize=broken)
    with caplog.at_level(logging.ERROR, logger="depot.middleware"):
        response = app.get(f"/depot/default/{public}", status=503)
    assert b"session store down" not in response.body
    assert "session store down" in caplog.text


def test_plain_authorize_runs_outside_the_event_loop(public: str) -> None:
    import threading

    threads: list[str] = []

    def authorize(request: RequestFacts, depot_name: str, file_id: str) -> bool:
        threads.append(threading.current_thread().name)
        return True

    loop_thread = threading.current_thread().name  # anyio.run runs the loop here
    asgi_client(authorize=authorize).get(f"/depot/default/{public}", status=200)
    assert threads and threads[0] != loop_thread
