"""Serve files over HTTP with depot, filedepot 0.12, Starlette and nginx, side by side.

Run from the repository root with the interpreter that has depot, gunicorn, granian,
uvicorn and starlette::

    python benchmarks/serve.py [--rounds 3] [--duration 5] [--reference-python PATH]
                               [--quick] [--no-in-process]

First the in-process CPU per request of depot's and filedepot's middleware
(``serve_inprocess.py``: no server, no socket). Then servers, all on 127.0.0.1, all with
2 workers (the machine's 2 cores): filedepot 0.12's and depot's middleware under the same
gunicorn (2 gthread workers of 4 threads); depot's WSGI middleware under granian; depot's
ASGI middleware (``depot.asgi``, when the checkout has it) under uvicorn and granian;
Starlette's ``StaticFiles`` serving the same bytes under the same two ASGI servers (what an
ASGI application would use instead); nginx serving the same bytes itself (sendfile on);
and two configurations of nginx in front of depot: ``offload='x-accel-redirect'`` (depot's
gunicorn answers every request, nginx sends the bytes) and nginx's ``proxy_cache`` in
front of depot's gunicorn (public files; nginx answers from its cache and revalidates with
depot once a second, so a replaced file is seen within 1 s). "gunicorn alone" is that
gunicorn again serving ``serve_app.hello`` (a fixed body from memory): the most any WSGI
app reaches with these settings. filedepot runs from its own venv (a throwaway one with
``filedepot==0.12.0`` unless ``--reference-python`` names one), where the script
pip-installs our gunicorn's version.

wrk sends the GETs (a run ends after ``--duration``; wrk has no request limit, so a hard
timeout backs it up); ab sends the HEADs, which wrk cannot time (``-n`` and ``-t``). Server
CPU is utime+stime of the server's process tree, read from /proc around every run. Rounds
alternate servers; the tables show medians. ``--quick``: one round of 2 s runs. Linux
only; needs nginx, wrk and ab.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FILES = {"1k": 1024, "64k": 64 * 1024, "100m": 100 * 2**20}
GUNICORN = ["--workers", "2", "--worker-class", "gthread", "--threads", "4"]
GRANIAN = ["--workers", "2", "--no-ws", "--log-level", "warning"]
UVICORN = ["--workers", "2", "--no-access-log", "--log-level", "warning"]
#: What each server is, as the second table names it.
CONFIGS = {
    "ours": "depot WSGI, gunicorn gthread (wsgi.file_wrapper: sendfile)",
    "granian-wsgi": "depot WSGI, granian --interface wsgi",
    "uvicorn-asgi": "depot ASGI, uvicorn",
    "granian-asgi": "depot ASGI, granian --interface asgi",
    "starlette-uvicorn": "Starlette StaticFiles, uvicorn",
    "starlette-granian": "Starlette StaticFiles, granian --interface asgi",
    "offload": "nginx + depot gunicorn, X-Accel-Redirect",
    "nginx-cache": "nginx proxy_cache (1 s) + depot gunicorn",
    "nginx": "nginx alone (sendfile)",
    "ref": "filedepot 0.12, gunicorn gthread",
    "hello": "gunicorn alone (fixed body)",
}
DEPOT_SERVERS = ("ours", "granian-wsgi", "uvicorn-asgi", "granian-asgi", "offload", "nginx-cache")
#: depot's ASGI server -> Starlette's under the same server.
SAME_SERVER = {"uvicorn-asgi": "starlette-uvicorn", "granian-asgi": "starlette-granian"}
AB_MAX_REQUESTS = 1_000_000
COLUMNS = (
    "workload",
    "filedepot 0.12",
    "depot",
    "depot/filedepot",
    "nginx",
    "depot/nginx",
    "gunicorn alone",
    "depot/gunicorn alone",
)
HELLO_FILES = ("1k", "64k")  # the FILES that serve_app.hello answers, at /1k and /64k

NGINX_CONF = """
daemon off;
master_process on;  # needed for 2 workers, to match gunicorn's 2
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    sendfile on;
    keepalive_requests 1000000;  # gunicorn never closes a connection after N requests
    proxy_cache_path {root}/cache levels=1:2 keys_zone=depot:10m max_size=1g use_temp_path=off;
    upstream depot {{ server 127.0.0.1:{plain}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ alias {static}/; }}
        # As docs/serving.rst has it: plain proxy_pass, and an internal location.
        location /depot/ {{ proxy_pass http://127.0.0.1:{upstream}; }}
        location /_depot/default/ {{ internal; alias {storage}/; }}
        # A public depot cached by nginx: a replace is seen within 1 s (revalidated
        # with If-None-Match), whatever max-age depot sends to browsers.
        location /cached/ {{
            proxy_pass http://depot/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache depot;
            proxy_ignore_headers Cache-Control Expires;
            proxy_cache_valid 200 1s;
            proxy_cache_revalidate on;
            proxy_cache_lock on;
        }}
    }}
}}
"""

# wrk's own summary rounds; this prints its exact totals.
WRK_LUA = """
function done(s, latency, requests)
  local e = s.errors
  io.write(string.format("BENCH %d %d %d %d\\n", s.requests, s.bytes, s.duration,
                         e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Side:
    """One project: its interpreter, the environment of its children, its stored file ids."""

    python: str
    env: dict[str, str]
    ids: list[str] = field(default_factory=list)


@dataclass
class Server:
    """A running server: where to send requests and whose CPU they cost."""

    name: str
    port: int
    pids: list[int]
    paths: dict[str, str]  # FILES key -> URL path
    etag: str = ""  # of the 1 KiB file, as this server sent it


@dataclass(frozen=True)
class Workload:
    """A load run made on each of ``servers``, and the target depot must meet.

    Target: depot's rate at least ``min_rate`` times that of ``vs`` and/or its
    server CPU per unit at most ``max_cpu`` times theirs (``either``: or).
    """

    label: str
    file: str
    headers: tuple[str, ...] = ()
    conns: int = 16
    servers: tuple[str, ...] = ("ref", "ours", "nginx")  # depot's column: the one not in OTHERS
    revalidate: bool = False  # send If-None-Match with the server's own ETag
    head: bool = False
    per_gb: bool = False  # MB/s and CPU s/GB instead of req/s and CPU µs/req
    vs: str = "ref"
    min_rate: float | None = None
    max_cpu: float | None = None
    either: bool = False


OTHERS = ("ref", "nginx", "hello")
WITH_HELLO = ("ref", "ours", "nginx", "hello")
#: Everything measured on small files; servers not started (no depot.asgi) are left out.
SERVERS = (
    "ours",
    "ref",
    "granian-wsgi",
    "uvicorn-asgi",
    "granian-asgi",
    "starlette-uvicorn",
    "starlette-granian",
    "nginx",
    "offload",
    "nginx-cache",
    "hello",
)
BIG = tuple(s for s in SERVERS if s != "hello")
WORKLOADS = [
    Workload("GET 1 KiB", "1k", servers=SERVERS, min_rate=2, max_cpu=0.5, either=True),
    Workload("GET 64 KiB", "64k", servers=SERVERS, min_rate=2, max_cpu=0.5, either=True),
    Workload(
        "GET 100 MiB",
        "100m",
        conns=2,
        servers=BIG,
        per_gb=True,
        vs="nginx",
        min_rate=0.9,
        max_cpu=1.5,
    ),
    Workload("304 revalidation, 1 KiB", "1k", servers=SERVERS, revalidate=True, min_rate=1.5),
    Workload("Range 0-1023 of 100 MiB", "100m", ("Range: bytes=0-1023",), min_rate=100),
    Workload("HEAD 100 MiB (ab)", "100m", head=True, min_rate=40),
]
#: The workloads of the second table (issue 14's), by label.
SERVING = ("GET 1 KiB", "GET 64 KiB", "304 revalidation, 1 KiB", "GET 100 MiB")
#: The first table (depot against filedepot, as in issue 12) shows only these servers.
FIRST_TABLE = ("ref", "ours", "nginx", "hello")


@dataclass
class Result:
    requests: int
    nbytes: int
    seconds: float
    cpu: float = 0.0  # server CPU seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(stack: ExitStack, cmd: list[str], port: int, log: Path, **popen: Any) -> int:
    """Start a server, stopped when ``stack`` closes (Ctrl-C too); its pid once it listens."""
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=out, **popen)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return int(process.pid)
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{cmd[0]} did not listen on 127.0.0.1:{port}; its log:\n{log.read_text()}")


def tree(pid: int) -> Iterator[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/<tid>/children)."""
    yield pid
    try:
        children = [
            int(child)
            for tid in os.listdir(f"/proc/{pid}/task")
            for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        ]
    except FileNotFoundError:
        return  # it ended meanwhile
    for child in children:
        yield from tree(child)


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds used by these process trees, including children they reaped."""
    ticks = 0
    for pid in (p for root in roots for p in tree(root)):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        # Fields 14-17 (utime, stime, cutime, cstime) are 11-14 after the ')' ending comm.
        ticks += sum(int(v) for v in stat.rsplit(")", 1)[1].split()[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def probe(port: int, path: str, method: str = "GET", **headers: str) -> tuple[int, str, int]:
    """One request; return its status, ETag and body length."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = conn.getresponse()
        size = 0
        while chunk := response.read(2**20):
            size += len(chunk)
        return response.status, response.getheader("ETag") or "", size
    finally:
        conn.close()


def run_wrk(url: str, headers: list[str], connections: int, duration: int, lua: Path) -> Result:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "30s", "-s", str(lua)]
    cmd += [arg for header in headers for arg in ("-H", header)] + [url]
    out = output(cmd, timeout=duration + 60)
    match = re.search(r"^BENCH (\d+) (\d+) (\d+) (\d+)$", out, re.M)
    if match is None:
        sys.exit(f"could not parse wrk's output:\n{out}")
    requests, nbytes, micros, errors = map(int, match.groups())
    if errors:
        print(f"  warning: wrk counted {errors} errors on {url}", file=sys.stderr)
    return Result(requests, nbytes, micros / 1e6)


def run_ab(url: str, connections: int, duration: int) -> Result:
    # ab's -t resets the request limit to 50,000, so -n must come after it.
    cmd = f"ab -q -k -i -t {duration} -n {AB_MAX_REQUESTS} -c {connections} -s 30 {url}".split()
    out = output(cmd, timeout=duration + 60)
    figures = dict(re.findall(r"^([A-Za-z -]+):\s+([\d.]+)", out, re.M))
    if int(figures.get("Failed requests", 0)) or int(figures.get("Non-2xx responses", 0)):
        print(f"  warning: failed or non-2xx answers from ab on {url}", file=sys.stderr)
    counts = [figures[k] for k in ("Complete requests", "Total transferred")]
    return Result(int(counts[0]), int(counts[1]), float(figures["Time taken for tests"]))


def measure(work: Workload, server: Server, duration: int, lua: Path) -> Result:
    url = f"http://127.0.0.1:{server.port}{server.paths[work.file]}"
    headers = [*work.headers, *([f"If-None-Match: {server.etag}"] if work.revalidate else [])]
    before = tree_cpu(server.pids)
    if work.head:
        result = run_ab(url, work.conns, duration)
    else:
        result = run_wrk(url, headers, work.conns, duration, lua)
    result.cpu = tree_cpu(server.pids) - before
    time.sleep(0.5)  # let aborted answers drain before the next server is timed
    return result


def check(servers: dict[str, Server]) -> list[str]:
    """GET every file once (warming the page cache), keep ETags, note other answers."""
    notes = []
    for server in servers.values():
        for key, path in server.paths.items():
            status, etag, got = probe(server.port, path)
            if (status, got) != (200, FILES[key]):
                sys.exit(f"{server.name}: GET {key} gave {status}, {got} bytes, not {FILES[key]}")
            server.etag = etag if key == "1k" else server.etag
        answers = {"304": probe(server.port, server.paths["1k"], If_None_Match=server.etag)}
        if big := server.paths.get("100m"):  # gunicorn alone has none
            answers["Range"] = probe(server.port, big, Range="bytes=0-1023")
            answers["HEAD"] = probe(server.port, big, "HEAD")
        told = [f"{what} -> {status}, {got} bytes" for what, (status, _, got) in answers.items()]
        notes.append(f"{server.name}: {', '.join(told)}")
    return notes


def depot_paths(side: Side) -> dict[str, str]:
    return {key: f"/depot/default/{fid}" for key, fid in zip(FILES, side.ids, strict=True)}


def start_python(
    stack: ExitStack,
    tmp: Path,
    name: str,
    side: Side,
    paths: dict[str, str],
    server: str = "gunicorn",
    **env: str,
) -> Server:
    """Start serve_app.py under ``server`` with ``side``'s environment plus ``env``."""
    port = free_port()
    bind = ["--host", "127.0.0.1", "--port", str(port)]
    commands = {
        "gunicorn": [
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            *GUNICORN,
            "--graceful-timeout",
            "5",
        ],
        "granian-wsgi": ["granian", "--interface", "wsgi", *bind, *GRANIAN],
        "granian-asgi": ["granian", "--interface", "asgi", *bind, *GRANIAN],
        "uvicorn": ["uvicorn", *bind, *UVICORN],
    }
    cmd = [side.python, "-m", *commands[server], "serve_app:application"]
    pid = spawn(stack, cmd, port, tmp / f"{name}.log", env={**side.env, **env}, cwd=tmp / "app")
    return Server(name, port, [pid], paths)


def has_asgi(side: Side) -> bool:
    """Whether depot's checkout has its ASGI front end (``depot.asgi``) yet."""
    check = "from depot.manager import DepotManager; DepotManager.make_asgi_middleware"
    return (
        subprocess.run([side.python, "-c", check], env=side.env, capture_output=True).returncode
        == 0
    )


def start_servers(stack: ExitStack, tmp: Path, sides: dict[str, Side]) -> dict[str, Server]:
    """Start every server, stopped when ``stack`` closes."""
    ours = sides["ours"]
    paths = depot_paths(ours)
    static = {key: f"/{key}.bin" for key in FILES}
    servers = {
        name: start_python(stack, tmp, name, side, depot_paths(side))
        for name, side in sides.items()
    }
    servers["granian-wsgi"] = start_python(stack, tmp, "granian-wsgi", ours, paths, "granian-wsgi")
    starlette = {"BENCH_MODE": "starlette", "BENCH_STATIC": str(tmp / "static")}
    if has_asgi(ours):
        for name, server in (("uvicorn-asgi", "uvicorn"), ("granian-asgi", "granian-asgi")):
            servers[name] = start_python(stack, tmp, name, ours, paths, server, BENCH_MODE="asgi")
    for name, server in (("starlette-uvicorn", "uvicorn"), ("starlette-granian", "granian-asgi")):
        servers[name] = start_python(stack, tmp, name, ours, static, server, **starlette)
    upstream = start_python(stack, tmp, "upstream", ours, paths, BENCH_OFFLOAD="x-accel-redirect")
    hello_paths = {key: f"/{key}" for key in HELLO_FILES}
    hello = start_python(stack, tmp, "hello", ours, hello_paths, BENCH_MODE="hello")

    root = tmp / "nginx"
    root.mkdir()
    port = free_port()
    # As root nginx would drop to 'nobody', who cannot read the 0700 temp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    storage = ours.env["BENCH_STORAGE"]
    plain = servers["ours"].port
    conf = dict(root=root, port=port, upstream=upstream.port, user=user, storage=storage)
    (root / "nginx.conf").write_text(NGINX_CONF.format(static=tmp / "static", plain=plain, **conf))
    cmd = ["nginx", "-p", str(root), "-e", str(root / "error.log"), "-c", str(root / "nginx.conf")]
    pid = spawn(stack, cmd, port, root / "error.log")
    servers["nginx"] = Server("nginx", port, [pid], {k: f"/static/{k}.bin" for k in FILES})
    servers["offload"] = Server("offload", port, [pid, *upstream.pids], upstream.paths)
    cached = {key: "/cached" + path for key, path in paths.items()}
    servers["nginx-cache"] = Server("nginx-cache", port, [pid, *servers["ours"].pids], cached)
    servers["hello"] = hello
    return servers


def make_files(static: Path) -> list[Path]:
    """Random (incompressible) files, in the directory nginx serves."""
    static.mkdir()
    for key, size in FILES.items():
        with open(static / f"{key}.bin", "wb") as f:
            for offset in range(0, size, 2**20):
                f.write(os.urandom(min(2**20, size - offset)))
    return [static / f"{key}.bin" for key in FILES]


def store_files(side: Side, cwd: Path, files: list[Path]) -> None:
    """Store the files with one project's own code, in a child of its interpreter."""
    cmd = [side.python, "serve_app.py", *map(str, files)]
    proc = subprocess.run(cmd, env=side.env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"storing with {side.python} failed:\n{proc.stderr}")
    side.ids = list(json.loads(proc.stdout.strip().splitlines()[-1]))


def prepare_reference(python: str | None, tmp: Path, gunicorn_version: str) -> str:
    """Return filedepot's interpreter, building its venv if needed, with gunicorn added."""
    packages = [f"gunicorn=={gunicorn_version}"]  # same server both sides: only depot differs
    if python is None:
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "ref-venv")], check=True)
        python = str(tmp / "ref-venv" / "bin" / "python")
        packages.append("filedepot==0.12.0")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages]
    subprocess.run(pip, check=True, cwd=tmp)
    return python


def output(cmd: list[str], timeout: float | None = None) -> str:
    """stdout and stderr of ``cmd``; a load generator failing or hanging ends the benchmark."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if timeout is not None and proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return proc.stdout + proc.stderr


def first_line(cmd: list[str]) -> str:
    return output(cmd).strip().splitlines()[0]


def print_header(args: argparse.Namespace, sides: dict[str, Side], notes: list[str]) -> None:
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(f"uname -sr: {platform.system()} {platform.release()}")
    print(f"nproc: {os.cpu_count()} (shared by the servers and the load generators)")
    about = "import sys, gunicorn; print(sys.version.split()[0], gunicorn.__version__)"
    for name, tag in (("depot", "ours"), ("filedepot 0.12", "ref")):
        python, gunicorn = first_line([sides[tag].python, "-c", about]).split()
        print(f"{name}: Python {python}, gunicorn {gunicorn} {' '.join(GUNICORN)}")
    print("gunicorn alone: as depot, serving serve_app.hello (a fixed body from memory)")
    print(f"{first_line(['nginx', '-v'])}: worker_processes 2 (master on), sendfile on")
    wrk = first_line(["wrk", "-v"]).split(" Copyright")[0]
    print(f"{wrk}: -t2 -c16 -d{args.duration}s (GET 100 MiB: -c2, MB = 10^6 bytes)")
    print(f"{first_line(['ab', '-V'])}: -k -i -c16 -t{args.duration} -n{AB_MAX_REQUESTS}")
    print("server CPU: utime+stime of the server's processes (offload: nginx + gunicorn)")
    print("\n".join(f"one request each, {note}" for note in notes))
    print(f"medians of {args.rounds} alternating rounds\n", flush=True)


def medians(runs: list[Result] | None, per_gb: bool) -> tuple[float | None, float | None]:
    """Median rate and median server CPU per unit (request, or GB)."""
    if not runs:
        return None, None
    # Units are MB or requests; CPU is shown in s per 1,000 MB or in µs per request.
    counted = [(r, r.nbytes / 1e6 if per_gb else max(r.requests, 1)) for r in runs]
    scale = 1e3 if per_gb else 1e6
    rate = statistics.median(units / r.seconds for r, units in counted)
    return rate, statistics.median(r.cpu * scale / units for r, units in counted)


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table_rows(work: Workload, results: dict[tuple[str, str], list[Result]]) -> list[list[str]]:
    """Two lines per workload, throughput then server CPU, with the verdict on the first."""
    depot = next(s for s in work.servers if s not in OTHERS)
    ref, ours, nginx, alone = (
        medians(results.get((work.label, s)), work.per_gb) for s in ("ref", depot, "nginx", "hello")
    )
    theirs, who = (ref, "filedepot") if work.vs == "ref" else (nginx, "nginx")
    units = ("MB/s", "CPU s/GB") if work.per_gb else ("req/s", "CPU µs/req")
    rows, met = [], []
    for i, limit in enumerate((work.min_rate, work.max_cpu)):
        versus, target = ratio(ours[i], theirs[i]), ""
        if limit is not None and versus is not None:
            met.append(versus >= limit if i == 0 else versus <= limit)
            target = f">= {limit:g}x {who}" if i == 0 else f"<= {limit:g}x {who}"
            target = f"{'or' if work.either else 'and'} {target}" if i else target
        label = f"{work.label} ({units[0]})" if i == 0 else f"  server {units[1]}"
        figures = (
            ref[i],
            ours[i],
            ratio(ours[i], ref[i]),
            nginx[i],
            ratio(ours[i], nginx[i]),
            alone[i],
            ratio(ours[i], alone[i]),
        )
        rows.append([label, *map(fmt, figures), target, ""])
    if met:
        rows[0][-1] = "yes" if (any(met) if work.either else all(met)) else "NO"
    return rows


def print_table(results: dict[tuple[str, str], list[Result]]) -> None:
    lines = [[*COLUMNS, "target", "ok?"]]
    for work in WORKLOADS:
        lines += table_rows(work, results)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [c.ljust(w) if i in (0, len(COLUMNS)) else c.rjust(w) for i, (c, w) in pairs]
        print(" | ".join(cells).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    print("\ngunicorn alone: the ceiling for any WSGI app under these gunicorn settings.")
    for work in WORKLOADS:
        if "hello" in work.servers and work.vs == "ref" and work.min_rate is not None:
            alone, ref = (
                medians(results.get((work.label, s)), work.per_gb)[0] for s in ("hello", "ref")
            )
            if ceiling := ratio(alone, ref):
                print(
                    f"{work.label}: gunicorn alone reaches {ceiling:.2f}x filedepot's rate;"
                    f" the target asks depot for {work.min_rate:g}x."
                )


def serving_rows(
    results: dict[tuple[str, str], list[Result]], servers: list[str]
) -> tuple[list[list[str]], list[str]]:
    """The second table (every server, issue 14's workloads) and its verdict lines."""
    rows, verdicts = [], []
    for work in (w for w in WORKLOADS if w.label in SERVING):
        units = ("MB/s", "s/GB") if work.per_gb else ("req/s", "µs/req")
        nginx = medians(results.get((work.label, "nginx")), work.per_gb)[0]
        best: tuple[float, str] | None = None
        for name in (s for s in work.servers if s in servers):
            rate, cpu = medians(results.get((work.label, name)), work.per_gb)
            if rate is None:
                continue
            if name in DEPOT_SERVERS and (best is None or rate > best[0]):
                best = (rate, name)
            versus = SAME_SERVER.get(name)
            theirs = medians(results.get((work.label, versus)), work.per_gb)[0] if versus else None
            target, ok = "", ""
            if versus and theirs and not work.per_gb:
                target, ok = ">= 1x Starlette", "yes" if rate >= theirs else "NO"
            rows.append(
                [
                    work.label,
                    CONFIGS[name],
                    f"{fmt(rate)} {units[0]}",
                    f"{fmt(cpu)} {units[1]}",
                    fmt(ratio(rate, nginx)),
                    fmt(ratio(rate, theirs)),
                    target,
                    ok,
                ]
            )
        goal = {"GET 1 KiB": 0.5, "GET 100 MiB": 0.9}.get(work.label)
        if goal is not None and best is not None and nginx:
            met = "met" if best[0] >= goal * nginx else "NOT met"
            verdicts.append(
                f"{work.label}: the best depot configuration is {CONFIGS[best[1]]}, at "
                f"{best[0] / nginx:.2f}x nginx's {units[0]} (target >= {goal}x): {met}"
            )
    return rows, verdicts


def print_serving(results: dict[tuple[str, str], list[Result]], servers: list[str]) -> None:
    rows, verdicts = serving_rows(results, servers)
    head = ["workload", "server", "rate", "server CPU", "x nginx", "x Starlette", "target", "ok?"]
    lines = [head, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    print()
    for n, line in enumerate(lines):
        cells = [
            c.ljust(w) if i in (0, 1, 6) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        print(" | ".join(cells).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    print()
    for line in verdicts:
        print(line)
    if "uvicorn-asgi" not in servers:
        print("depot ASGI: not measured (this checkout has no depot.asgi yet)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per load run")
    parser.add_argument("--reference-python", help="interpreter with filedepot 0.12 installed")
    parser.add_argument("--quick", action="store_true", help="one round of 2 s runs")
    parser.add_argument(
        "--no-in-process", action="store_true", help="skip the in-process CPU measurement"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2
    return args


def main() -> None:
    args = parse_args()
    for tool in ("nginx", "wrk", "ab"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (Debian: apt-get install nginx-light wrk apache2-utils)")
    import gunicorn  # fails here, before anything is built, if it is missing

    # Ctrl-C raises KeyboardInterrupt; make a plain kill unwind the same way, stopping servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"killed by signal {signum}"))

    with tempfile.TemporaryDirectory(prefix="depot-serve-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        ref = prepare_reference(args.reference_python, tmp, gunicorn.__version__)
        if not args.no_in_process:
            import serve_inprocess  # beside this script

            quick = dict(rounds=3, requests=1000) if args.quick else dict(rounds=7, requests=3000)
            print("\n".join(serve_inprocess.run(ref, **quick)), "\n", flush=True)
        # No repository on filedepot's path, and serve_app.py refuses a depot from elsewhere.
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        venv = first_line([ref, "-c", "import sys; print(sys.prefix)"])
        ours = {**base, "BENCH_DEPOT_UNDER": str(REPO), "PYTHONPATH": str(REPO)}
        sides = {
            "ref": Side(ref, {**base, "BENCH_DEPOT_UNDER": venv}),
            "ours": Side(sys.executable, ours),
        }
        (tmp / "app").mkdir()
        shutil.copy(Path(__file__).with_name("serve_app.py"), tmp / "app")
        files = make_files(tmp / "static")
        for tag, side in sides.items():
            side.env["BENCH_STORAGE"] = str(tmp / f"store-{tag}")
            store_files(side, tmp / "app", files)
        servers = start_servers(stack, tmp, sides)
        print_header(args, sides, check(servers))
        lua = tmp / "done.lua"
        lua.write_text(WRK_LUA)
        for server in servers.values():  # unrecorded: threads start, caches fill
            run_wrk(f"http://127.0.0.1:{server.port}{server.paths['1k']}", [], 16, 1, lua)
        results: dict[tuple[str, str], list[Result]] = {}
        for n in range(args.rounds):
            for work in WORKLOADS:
                # Rotate who goes first, so no server always runs right after the same one.
                started = [name for name in work.servers if name in servers]
                k = n % len(started)
                for name in started[k:] + started[:k]:
                    result = measure(work, servers[name], args.duration, lua)
                    results.setdefault((work.label, name), []).append(result)
                print(f"round {n + 1}/{args.rounds}: {work.label}", file=sys.stderr, flush=True)
        print_table(results)
        print_serving(results, list(servers))


if __name__ == "__main__":
    main()
