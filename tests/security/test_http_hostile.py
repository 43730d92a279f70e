"""Hostile requests and hostile stored values against DepotMiddleware (issue 12's campaign).

Property-based (hypothesis, with the profiles of tests/conftest.py): file ids
in URLs, every request header the middleware reads, stored file names and
content types, including values planted in the metadata directly, as another
program (or an older version) may have written them. For every request:

- never a 5xx, never an exception escaping the middleware;
- every header name and value is what PEP 3333 allows (Latin-1, no CR, LF or
  other control character but HTAB);
- nothing outside the depot is ever opened, and an id that is not a stored
  file's is a 404;
- HEAD and GET agree on the status and the headers;
- a served body matches its Content-Length and Content-Range, multipart
  bodies part by part.

Most examples drive the WSGI application in-process; a smaller set goes
through a real wsgiref server on 127.0.0.1 with raw bytes on a socket.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from webob import Request

from depot.io.memory import MemoryFileStorage
from depot.manager import DepotManager
from depot.middleware import DepotMiddleware

MISSING = "00000000-0000-4000-8000-000000000000"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def wrapped_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


# --- what is stored --------------------------------------------------------------------


# Built from a length, not listed: a strategy's repr holds the values it samples.
def repeated(text: str, low: int, high: int, tail: str = "") -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: text * n + tail)


any_char = st.characters(exclude_categories=())  # lone surrogates included
latin1 = st.binary(max_size=60).map(lambda b: b.decode("latin-1"))

hostile_names = st.one_of(
    st.text(any_char, max_size=40),
    st.sampled_from(
        [
            "a\r\nSet-Cookie: x=1.png",
            'q";filename=evil.exe',
            "caf\udce9.txt",
            "\udcff",
            "..\\..\\boot.ini",
            "../../etc/passwd",
            "\x00.png",
            "",
        ]
    ),
    st.builds(
        lambda char, count, ext: char * count + ext,
        st.sampled_from(["a", "\u732b", "\U0001f408", '"', "%", "\x01"]),
        st.integers(200, 6000),
        st.sampled_from(["", ".pdf", ".tar.gz", ".x" * 100]),
    ),
)

hostile_types = st.one_of(
    st.sampled_from(
        [
            "text/html\r\n\r\n;x=y",
            "text/html\r\n\r\n<script>alert(1)</script>",
            "text/html\x0b;x=y",
            "text/html\x1c",
            "text/html;\u2028x=y",
            "t\u0435xt/html",
            'image/png; x="a\r\nb"',
            "image/png",
            "text/plain; charset=utf-8",
            "image/svg+xml",
            "text/html",
            "",
        ]
    ),
    repeated("x", 200, 6000),
    st.text(any_char, max_size=30),
    st.builds(
        lambda t, s, p: f"{t}/{s}{p}",
        st.text(any_char, min_size=1, max_size=8),
        st.text(any_char, min_size=1, max_size=8),
        st.text(any_char, max_size=12),
    ),
)


@dataclass
class Stored:
    depot: str
    file_id: str
    data: bytes


@dataclass
class World:
    """The depots of one example: 'mem' (memory), 'loc' (local) and 'old', an alias of 'loc'."""

    root: Path
    depots: dict[str, Any]

    def store(self, where: str, data: bytes, name: str, content_type: str, plant: bool) -> Stored:
        storage = self.depots[where]
        file_id = storage.create(data, "x.bin", "application/octet-stream")
        if plant:  # written as another program could: no store-side normalisation
            write_metadata(storage, file_id, filename=name, content_type=content_type)
        else:
            storage.replace(file_id, data, name, content_type)
        return Stored(where, file_id, data)


def write_metadata(storage: Any, file_id: str, **values: Any) -> None:
    if isinstance(storage, MemoryFileStorage):
        storage.files[file_id]["metadata"].update(values)
        return
    path = Path(storage.storage_path) / file_id / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata.update(values)
    path.write_text(json.dumps(metadata))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile") / "files"


def make_world(root: Path) -> World:
    DepotManager._clear()
    memory = DepotManager.configure("mem", {"depot.backend": "memory"})
    local = DepotManager.configure("loc", {"depot.storage_path": str(root), "depot.fsync": "false"})
    DepotManager.alias("old", "loc")
    return World(root, {"mem": memory, "loc": local})


# --- what is asked ------------------------------------------------------------------


def digits() -> st.SearchStrategy[str]:
    # More than 4,300 digits: beyond what int() converts.
    return st.one_of(
        st.integers(0, 5000).map(str),
        repeated("9", 4301, 6000),
        repeated("0", 4301, 6000, "1"),
        st.sampled_from(["\u0661", "\uff11", "1_0", "+1", "-0", " 7 "]),
    )


range_specs = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}", digits(), digits()),
    st.builds(lambda a: f"{a}-", digits()),
    st.builds(lambda b: f"-{b}", digits()),
    latin1,
)
ranges = st.one_of(
    st.builds(
        lambda unit, specs: unit + "=" + ",".join(specs),
        st.sampled_from(["bytes", "BYTES", "bytes ", "items", ""]),
        st.lists(range_specs, min_size=0, max_size=120),
    ),
    latin1,
)
dates = st.one_of(
    st.just("<DATE>"),
    st.builds(
        lambda day, year, time, zone: f"Mon, {day} Jan {year} {time} {zone}",
        st.sampled_from(["01", "31", "99", "0"]),
        st.sampled_from(["1994", "2038", "9999", "10000", "99999999999999999999", "0", "70"]),
        st.sampled_from(["00:00:00", "23:59:60", "99999999999:00:00"]),
        st.sampled_from(["GMT", "+0000", "+9999", "+99999999999", "-2400", "XYZ"]),
    ),
    latin1,
)
etags = st.one_of(
    st.sampled_from(['"<ETAG>"', 'W/"<ETAG>"', '"<ETAG>", "x"', '"<ETAG>", *', "*", '"x"']),
    st.lists(st.sampled_from(['"<ETAG>"', '"a"', 'W/"b"', "*", '"', "<ETAG>"])).map(", ".join),
    latin1,
)
request_headers = st.fixed_dictionaries(
    {},
    optional={
        "HTTP_RANGE": ranges,
        "HTTP_IF_RANGE": st.one_of(etags, dates),
        "HTTP_IF_MATCH": etags,
        "HTTP_IF_NONE_MATCH": etags,
        "HTTP_IF_MODIFIED_SINCE": dates,
        "HTTP_IF_UNMODIFIED_SINCE": dates,
        "HTTP_ACCEPT": latin1,
        "HTTP_ACCEPT_ENCODING": latin1,
        "HTTP_ACCEPT_LANGUAGE": latin1,
        "HTTP_ACCEPT_RANGES": latin1,
    },
)
hostile_segments = st.one_of(
    st.sampled_from(
        [
            "..",
            ".",
            "%2e%2e",
            "../../etc/passwd",
            "..%2F..%2Fetc%2Fpasswd",
            "/etc/passwd",
            "\x00",
            MISSING,
            MISSING + "\x00",
            MISSING.upper(),
            " " + MISSING,
            "\u0660" * 36,
            "",
        ]
    ),
    repeated("a", 200, 6000),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
)


# --- the properties ------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def call(app: Any, method: str, path: str, headers: dict[str, str]) -> Answer:
    environ = Request.blank("/").environ
    environ.update(headers, REQUEST_METHOD=method, PATH_INFO=path)
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list, exc_info: Any = None) -> Any:
        assert exc_info is None, exc_info
        assert re.fullmatch(r"[1-5][0-9][0-9] [\x20-\x7e]+", status), status
        seen["status"], seen["headers"] = int(status[:3]), response_headers
        return lambda data: pytest.fail("the write() callable was used")

    body_iter = app(environ, start_response)
    try:
        body = b"".join(body_iter)
    finally:
        close = getattr(body_iter, "close", None)
        if close is not None:
            close()
    return Answer(seen["status"], seen["headers"], body)


def check_headers(headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        assert type(name) is str and type(value) is str, (name, value)
        assert _TOKEN.fullmatch(name), name
        value.encode("latin-1")  # PEP 3333: header values are Latin-1
        assert not _BAD_IN_VALUE.search(value), (name, value)
        assert len(value) < 4096, (name, len(value))


def check_body(answer: Answer, data: bytes) -> None:
    headers = dict(answer.headers)
    if answer.status not in (200, 206):
        return
    assert headers["Content-Length"] == str(len(answer.body))
    if answer.status == 200:
        assert answer.body == data
        return
    content_type = headers["Content-Type"]
    if not content_type.startswith("multipart/byteranges"):
        start, stop, total = parse_content_range(headers["Content-Range"])
        assert total == len(data) and answer.body == data[start : stop + 1]
        return
    assert "Content-Range" not in headers
    boundary = re.fullmatch(r"multipart/byteranges; boundary=(\w+)", content_type)[1]
    parts = answer.body.split(b"--" + boundary.encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n", answer.body[:200]
    assert len(parts) >= 4  # two ranges at least
    for part in parts[1:-1]:
        head, _, rest = part.partition(b"\r\n\r\n")
        assert rest.endswith(b"\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
        start, stop, total = parse_content_range(fields["Content-Range"])
        assert total == len(data) and rest[:-2] == data[start : stop + 1]


def parse_content_range(value: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)", value)
    assert match, value
    start, stop, total = (int(g) for g in match.groups())
    assert start <= stop < total, value
    return start, stop, total


def comparable(answer: Answer) -> tuple[int, dict[str, str]]:
    headers = {k: v for k, v in answer.headers if k != "Expires"}  # a clock, per second
    if headers.get("Content-Type", "").startswith("multipart/byteranges"):
        headers["Content-Type"] = "multipart/byteranges"  # a fresh boundary each time
    return answer.status, headers


class OpenedFiles:
    """Records every path opened while :attr:`recording` is set (builtins.open and os.open)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        self.recording = False
        real_open, real_os_open = builtins.open, os.open

        def recording_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            self._seen(file)
            return real_open(file, *args, **kwargs)

        def recording_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
            seen, dir_fd = path, kwargs.get("dir_fd")
            if dir_fd is not None and not os.path.isabs(os.fsdecode(path)):
                # Opened relative to a directory descriptor: where that is.
                seen = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), os.fsdecode(path))
            self._seen(seen)
            return real_os_open(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", recording_open)
        monkeypatch.setattr(os, "open", recording_os_open)

    def _seen(self, path: Any) -> None:
        if self.recording and isinstance(path, (str, bytes, os.PathLike)):
            self.paths.append(os.path.realpath(os.fsdecode(path)))

    def outside(self, root: Path) -> list[str]:
        inside = os.path.realpath(root) + os.sep
        return [path for path in self.paths if not path.startswith(inside)]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> OpenedFiles:
    return OpenedFiles(monkeypatch)


def substitute(headers: dict[str, str], etag: str, date: str) -> dict[str, str]:
    return {k: v.replace("<ETAG>", etag).replace("<DATE>", date) for k, v in headers.items()}


def served_validators(app: Any, stored: Stored) -> tuple[str, str]:
    answer = call(app, "HEAD", f"/depot/{stored.depot}/{stored.file_id}", {})
    headers = dict(answer.headers)
    return headers.get("ETag", '""').strip('"'), headers.get("Last-Modified", "")


def get_and_head(
    app: Any, path: str, headers: dict[str, str], opened: OpenedFiles, root: Path
) -> tuple[Answer, Answer]:
    opened.recording = True
    try:
        get = call(app, "GET", path, headers)
        head = call(app, "HEAD", path, headers)
    finally:
        opened.recording = False
    assert opened.outside(root) == [], "a file outside the depot was opened"
    opened.paths.clear()
    for answer in (get, head):
        assert answer.status < 500, (answer.status, answer.body[:300])
        check_headers(answer.headers)
    assert head.body == b""
    assert comparable(head) == comparable(get)
    return get, head


@given(
    where=st.sampled_from(["mem", "loc"]),
    data=st.one_of(st.binary(max_size=3000), st.just(b"")),
    name=hostile_names,
    content_type=hostile_types,
    plant=st.booleans(),
    via=st.sampled_from(["mem", "loc", "old"]),
    headers=request_headers,
)
def test_hostile_headers_and_stored_values(
    root: Path,
    opened: OpenedFiles,
    where: str,
    data: bytes,
    name: str,
    content_type: str,
    plant: bool,
    via: str,
    headers: dict[str, str],
) -> None:
    world = make_world(root)
    stored = world.store(where, data, name, content_type, plant)
    app = DepotMiddleware(wrapped_app)
    etag, date = served_validators(app, stored)
    path = f"/depot/{via}/{stored.file_id}"
    get, _ = get_and_head(app, path, substitute(headers, etag, date), opened, root)
    reachable = via == where or (via == "old" and where == "loc")
    if not reachable:
        assert get.status == 404
    else:
        assert get.status in (200, 206, 304, 412, 416), get.status
        check_body(get, data)


@given(
    depot=st.one_of(st.sampled_from(["mem", "loc", "old", "", ".", ".."]), hostile_segments),
    segments=st.lists(hostile_segments, min_size=1, max_size=4),
    method=st.sampled_from(["GET", "HEAD"]),
    headers=request_headers,
)
def test_hostile_paths_are_404_and_open_nothing_outside(
    root: Path,
    opened: OpenedFiles,
    depot: str,
    segments: list[str],
    method: str,
    headers: dict[str, str],
) -> None:
    world = make_world(root)
    real = world.store("loc", b"secret", "s.txt", "text/plain", False)
    app = DepotMiddleware(wrapped_app)
    path = "/depot/" + depot + "/" + "/".join(segments)
    if path.rstrip("/") in (f"/depot/loc/{real.file_id}", f"/depot/old/{real.file_id}"):
        return  # generated the real file's path: not hostile
    get, _ = get_and_head(app, path, substitute(headers, "x", "x"), opened, root)
    assert get.status == 404, (path, get.status)
    assert b"secret" not in get.body


# --- over a real server ---------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def wsgiref_port() -> Iterator[int]:
    # The middleware reads DepotManager when each request arrives: every
    # example configures its own depots before sending.
    server = make_server(
        "127.0.0.1", 0, DepotMiddleware(wrapped_app), WSGIServer, handler_class=QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def raw_request(port: int, method: str, path: bytes, headers: dict[str, bytes]) -> bytes:
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    lines += [b"Connection: close", b"", b""]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"\r\n".join(lines))
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_raw(response: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, separator, body = response.partition(b"\r\n\r\n")
    assert separator, response[:300]
    status_line, *lines = head.decode("latin-1").split("\r\n")
    match = re.fullmatch(r"HTTP/1\.[01] ([0-9]{3}) .*", status_line)
    assert match, status_line
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon and _TOKEN.fullmatch(name), f"not a header line: {line!r}"
        headers.append((name, value.strip(" \t")))
    return int(match[1]), headers, body


# On the wire a header value cannot hold CR or LF (it would be a new line of
# the request, which the server, not depot, parses), nor NUL.
wire_value = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
wire_headers = st.dictionaries(
    st.sampled_from(
        [
            "Range",
            "If-Range",
            "If-Match",
            "If-None-Match",
            "If-Modified-Since",
            "If-Unmodified-Since",
            "Accept",
        ]
    ),
    st.one_of(ranges, dates, etags)
    .map(lambda v: v.encode("utf-8"))
    .filter(lambda b: b"\r" not in b and b"\n" not in b)
    | wire_value,
    max_size=4,
)


@settings(max_examples=max(1, settings.default.max_examples // 5))
@given(
    where=st.sampled_from(["mem", "loc"]),
    data=st.binary(max_size=2000),
    name=hostile_names,
    content_type=hostile_types,
    method=st.sampled_from(["GET", "HEAD"]),
    headers=wire_headers,
)
def test_hostile_values_over_wsgiref(
    root: Path,
    wsgiref_port: int,
    where: str,
    data: bytes,
    name: str,
    content_type: str,
    method: str,
    headers: dict[str, bytes],
) -> None:
    world = make_world(root)
    stored = world.store(where, data, name, content_type, True)
    path = f"/depot/{where}/{stored.file_id}".encode()
    status, response_headers, body = parse_raw(raw_request(wsgiref_port, method, path, headers))
    assert status < 500, (status, body[:300])
    check_headers(response_headers)
    fields = dict(response_headers)
    if method == "HEAD":
        assert body == b""
    elif status in (200, 206):
        assert fields["Content-Length"] == str(len(body))
        check_body(Answer(status, response_headers, body), data)
    if "Content-Type" in fields and status in (200, 206):
        assert "html" not in fields["Content-Type"] or fields["Content-Disposition"].startswith(
            "attachment"
        )


def test_response_splitting_through_the_content_type_over_wsgiref(
    root: Path, wsgiref_port: int
) -> None:
    # The reproduction of issue 12, finding 4: this type ended the headers early.
    world = make_world(root)
    html = b"<script>alert(1)</script>"
    stored = world.store("loc", html, "x.html", "text/html\r\n\r\n;x=y", True)
    response = raw_request(wsgiref_port, "GET", f"/depot/loc/{stored.file_id}".encode(), {})
    status, headers, body = parse_raw(response)
    assert status == 200
    assert dict(headers)["Content-Type"] == "application/octet-stream"
    assert dict(headers)["Content-Disposition"].startswith("attachment;")
    assert body == html
