"""CPU per request of depot's WSGI middleware against filedepot 0.12's, in-process.

Run from the repository root with the interpreter that has depot::

    python benchmarks/serve_inprocess.py [--rounds 7] [--requests 3000]
                                         [--reference-python /tmp/ref/bin/python] [--profile]

No server and no socket: each project's ``DepotMiddleware`` (over a local depot) is called
directly with a minimal PEP 3333 environ, and the answer's body is consumed and closed the
way a server does. What is measured is the process CPU time (``time.process_time``) of a
batch of requests, divided by their number. Workloads, each on a file of 1 KiB:

``GET``
    no ``wsgi.file_wrapper`` in the environ: the body is iterated and closed.
``GET, file_wrapper``
    a ``wsgi.file_wrapper`` like gunicorn's: if the file has a descriptor the bytes are
    left to ``sendfile()`` (not called: there is no socket), else it is read block by
    block, as gunicorn does then.
``304``
    ``If-None-Match`` with the ETag the file was served with.

Both projects install the package ``depot``, so each runs in a child of its own
interpreter (filedepot's under ``python -I`` from a temporary directory, refusing to run
with any other ``depot``), kept alive for the whole run and asked for one batch at a time:
rounds alternate the two, which goes first rotating. The table shows medians and the ratio
depot/filedepot. ``--profile`` prints where depot's time goes (cProfile, in depot's child).
Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = "/tmp/ref/bin/python"
WORKLOADS = {
    # name in the child: (label in the table, the target ratio depot/filedepot)
    "get": ("GET 1 KiB, no file_wrapper", 0.4),
    "get-wrapper": ("GET 1 KiB, file_wrapper", 0.4),
    "304": ("304 revalidation, 1 KiB", 0.4),
}

# The child: stores one file of 1 KiB in a local depot, then answers commands read from
# stdin, one JSON line each, with one JSON line. It must run under both projects, so it
# uses nothing filedepot 0.12 lacks.
CHILD = r'''
import cProfile, gc, io, json, os, pstats, sys, time

expected, storage_path = sys.argv[1], sys.argv[2]
import depot
from depot.manager import DepotManager

if not os.path.realpath(depot.__file__).startswith(os.path.realpath(expected) + os.sep):
    sys.exit(f"imported depot from {depot.__file__}, expected it under {expected}")

DepotManager.configure("default", {"depot.storage_path": storage_path})
fileid = DepotManager.get("default").create(os.urandom(1024), "one.png", "image/png")
# depot caches a file's parsed metadata once its files are 3 s old (a newer file's status
# could still repeat); a file served at any rate is older than that.
time.sleep(3.5)


def fallback(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not a depot URL"]


app = DepotManager.make_middleware(fallback)


class FileWrapper:
    """What gunicorn's wsgi.file_wrapper keeps: the file and the block size."""

    def __init__(self, filelike, blksize=8192):
        self.filelike, self.blksize = filelike, blksize

    def close(self):
        self.filelike.close()


def send(body):
    """Consume and close an answer's body as gunicorn does; return the bytes it sent."""
    sent = 0
    try:
        if isinstance(body, FileWrapper):
            try:
                body.filelike.fileno()  # gunicorn then sendfile()s it: no copy here
                return -1
            except (AttributeError, io.UnsupportedOperation):
                iterate = iter(lambda: body.filelike.read(body.blksize), b"")
        else:
            iterate = body
        for chunk in iterate:
            sent += len(chunk)
    finally:
        if hasattr(body, "close"):
            body.close()
    return sent


BASE = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": f"/depot/default/{fileid}",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_HOST": "127.0.0.1:8000",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.input": io.BytesIO(b""),
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}
answer = []


def start_response(status, headers, exc_info=None):
    answer[:] = [status, headers]
    return lambda data: None


def request(extra):
    environ = dict(BASE)
    environ.update(extra)
    return send(app(environ, start_response))


send(app(dict(BASE), start_response))
etag = dict(answer[1])["ETag"]
ENVIRONS = {
    "get": {},
    "get-wrapper": {"wsgi.file_wrapper": FileWrapper},
    "304": {"HTTP_IF_NONE_MATCH": etag},
}
EXPECTED = {"get": ("200", 1024), "get-wrapper": ("200", (1024, -1)), "304": ("304", 0)}
for name, extra in ENVIRONS.items():  # one of each, checked, before anything is timed
    sent = request(extra)
    status, size = EXPECTED[name]
    if answer[0].split()[0] != status or sent not in (size if isinstance(size, tuple) else (size,)):
        sys.exit(f"{name}: got {answer[0]} with {sent} bytes, expected {status}, {size}")

print(json.dumps({"depot": depot.__file__, "python": sys.version.split()[0]}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    extra, n = ENVIRONS[command["workload"]], command["requests"]
    gc.collect()
    if command.get("profile"):
        profile = cProfile.Profile()
        profile.enable()
    start = time.process_time()
    for _ in range(n):
        request(extra)
    cpu = time.process_time() - start
    result = {"cpu": cpu}
    if command.get("profile"):
        profile.disable()
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text).strip_dirs()
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(30)
        result["profile"] = text.getvalue()
    print(json.dumps(result), flush=True)
'''


@dataclass
class Child:
    """One project's interpreter, running CHILD; asked for one batch at a time."""

    name: str
    process: subprocess.Popen[str]
    about: dict[str, str] = field(default_factory=dict)

    def ask(self, **command: object) -> dict[str, object]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"{self.name}'s child ended (exit status {self.process.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def ready(self) -> None:
        """Wait for the child's first line: what it imported."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"{self.name}'s child failed to start (exit status {self.process.wait()})")
        self.about = json.loads(line)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def start_child(name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> Child:
    """Start CHILD; :meth:`Child.ready` waits for it to have stored its file."""
    process = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    return Child(name, process)


def start_children(reference: str, tmp: Path, root: Path = REPO) -> dict[str, Child]:
    """filedepot's child and depot's (imported from ``root``), each with its own store."""
    script = tmp / "child.py"
    script.write_text(CHILD)
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    venv = subprocess.run(
        [reference, "-I", "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ref_cmd = [reference, "-I", str(script), venv, str(tmp / "store-ref")]
    ours_cmd = [sys.executable, str(script), str(root), str(tmp / "store-ours")]
    children = {
        "filedepot": start_child("filedepot", ref_cmd, base, tmp),
        "depot": start_child("depot", ours_cmd, {**base, "PYTHONPATH": str(root)}, tmp),
    }
    for child in children.values():  # both wait for their file to settle at once
        child.ready()
    return children


def measure(
    children: dict[str, Child], rounds: int, requests: int, progress: bool = True
) -> dict[tuple[str, str], list[float]]:
    """µs of CPU per request, per (workload, project), one figure per round."""
    results: dict[tuple[str, str], list[float]] = {}
    names = list(children)
    for child in children.values():  # unrecorded: caches fill, code warms up
        for workload in WORKLOADS:
            child.ask(workload=workload, requests=requests // 4 or 1)
    for n in range(rounds):
        for workload in WORKLOADS:
            order = names[n % 2 :] + names[: n % 2]
            for name in order:
                cpu = children[name].ask(workload=workload, requests=requests)["cpu"]
                assert isinstance(cpu, float)
                results.setdefault((workload, name), []).append(cpu * 1e6 / requests)
        if progress:
            print(f"round {n + 1}/{rounds} done", file=sys.stderr, flush=True)
    return results


def table(results: dict[tuple[str, str], list[float]]) -> list[str]:
    """The table's lines: medians, the ratio and the verdict per workload."""
    head = ["workload", "filedepot 0.12 µs/req", "depot µs/req", "depot/filedepot", "target", "ok?"]
    lines = [head]
    for workload, (label, target) in WORKLOADS.items():
        ref = statistics.median(results[(workload, "filedepot")])
        ours = statistics.median(results[(workload, "depot")])
        versus = ours / ref
        ok = "yes" if versus <= target else "NO"
        lines.append([label, f"{ref:.1f}", f"{ours:.1f}", f"{versus:.2f}x", f"<= {target}x", ok])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.ljust(w) if i in (0, 4) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append(" | ".join(cells).rstrip())
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    return out


def run(
    reference: str, rounds: int, requests: int, profile: bool = False, root: Path = REPO
) -> list[str]:
    """Measure; return the report's lines (header, table, and the profile if asked for)."""
    with tempfile.TemporaryDirectory(prefix="depot-inprocess-") as tmp_name:
        children = start_children(reference, Path(tmp_name), root)
        try:
            results = measure(children, rounds, requests)
            profiles = []
            if profile:
                for workload in WORKLOADS:
                    answer = children["depot"].ask(
                        workload=workload, requests=requests, profile=True
                    )
                    profiles += [
                        f"--- depot, {WORKLOADS[workload][0]}, {requests} requests",
                        str(answer["profile"]),
                    ]
        finally:
            for child in children.values():
                child.close()
    lines = [
        f"uname -sr: {platform.system()} {platform.release()}, nproc {os.cpu_count()}",
        *(
            f"{name}: Python {child.about['python']}, {child.about['depot']}"
            for name, child in children.items()
        ),
        f"CPU per request (process_time), {requests} requests a batch, "
        f"medians of {rounds} alternating rounds",
        "",
        *table(results),
    ]
    return lines + profiles


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000, help="requests per batch")
    parser.add_argument(
        "--reference-python",
        default=DEFAULT_REFERENCE,
        help=f"interpreter with filedepot 0.12 installed (default {DEFAULT_REFERENCE})",
    )
    parser.add_argument("--profile", action="store_true", help="print cProfile of depot's side")
    parser.add_argument(
        "--depot-root",
        type=Path,
        default=REPO,
        help="the checkout whose depot is measured (default: this one)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    lines = run(args.reference_python, args.rounds, args.requests, args.profile, args.depot_root)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
