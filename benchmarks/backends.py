"""Compare depot's storage backends with filedepot 0.12's, side by side, on local servers.

Run from the repository root, with the interpreter that has depot's dependencies::

    python benchmarks/backends.py [--rounds 3] [--files 500] [--big-mib 256]
        [--backends memory,local,local-nosync,s3,gridfs,gcs,sql-sqlite,sql-postgresql]
        [--reference-python PYTHON] [--sql-chunk-size BYTES] [--sql-baseline CHECKOUT]

Per backend: create, then get+read, N files of 1 KiB; store a big file from an open file,
read it back in 64 KiB chunks; the child's peak RSS. S3: one moto server on 127.0.0.1,
reached over HTTP by both, each in its own buckets. GridFS: mongomock in each child (the
data lives in that process), or the MongoDB ``DEPOT_TEST_MONGODB_URI`` names. GCS, once
depot has it: a new gcp-storage-emulator per child, or ``DEPOT_TEST_GCS_EMULATOR``'s.
``local-nosync``: depot with ``fsync=False`` against filedepot (which never fsyncs).
``sql-sqlite``, ``sql-postgresql``: filedepot has no SQL backend, so depot's SQLStorage
is measured against the plain statements that give the same result through the same
driver (the limit): one INSERT and one SELECT of the bytes per small file, and the big
file inserted and selected in rows of the same chunk size. Printed in a table of their
own, beside depot's local storage. PostgreSQL: the server on 127.0.0.1:5432 (or
``DEPOT_TEST_POSTGRESQL_URL``), in a database of this run, dropped at the end.
``--sql-baseline`` names another checkout of depot (an earlier commit, e.g. from
``git worktree add``) whose SQLStorage runs in the same rounds, for a before and
after measured under the same load.
As in storage.py each measurement runs in a fresh child (ours with the repository on
``PYTHONPATH``, filedepot under ``python -I``); who goes first swaps every round; the
table shows medians. filedepot's venv (throwaway, unless ``--reference-python``) gets
the versions of boto3, pymongo, mongomock and google-cloud-storage ours has.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024
RSS_LIMIT = 64  # MiB, for depot storing and reading the big file
MONGODB_URI = os.environ.get("DEPOT_TEST_MONGODB_URI")
GCS_EMULATOR = os.environ.get("DEPOT_TEST_GCS_EMULATOR")  # else gcp-storage-emulator is started
POSTGRESQL_URL = os.environ.get(
    "DEPOT_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SQL_BACKENDS = ["sql-sqlite", "sql-postgresql"]
SQL_TARGET = 0.7  # depot's SQLStorage against the plain statements
# 'private' for both: with 'public-read' filedepot sets a new S3 bucket's public access
# block through a client without endpoint_url (so on AWS, not moto), and edits GCS IAM.
S3_SETTINGS = {"access_key_id": "k", "secret_access_key": "s", "region_name": "us-east-1"}
S3_SETTINGS["policy"] = "private"
ALL_BACKENDS = ["memory", "local", "local-nosync", "s3", "gridfs", "gcs", *SQL_BACKENDS]
# What each backend needs in filedepot's venv, besides filedepot: module, distribution.
NEEDS = {
    "s3": {"boto3": "boto3"},
    "gridfs": {"pymongo": "pymongo", **({} if MONGODB_URI else {"mongomock": "mongomock"})},
    "gcs": {"google.cloud.storage": "google-cloud-storage"},
}

# Runs in a child so filedepot and depot never share a process: takes a JSON spec as its
# argument and prints its figures as JSON, named by the table's keys.
CHILD = r"""
import json, os, platform, resource, sys, time
spec = json.loads(sys.argv[1])
if spec.get("mongomock"):
    # Before depot is imported: filedepot binds pymongo.MongoClient at import time.
    import mongomock, mongomock.gridfs, pymongo
    mongomock.gridfs.enable_gridfs_integration()
    pymongo.MongoClient = mongomock.MongoClient
import depot
out = {"depot_file": depot.__file__}

def rss_mib():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

class PlainSQL:
    # The least a program can do to store and read back the same bytes: plain
    # statements through one open connection of the same driver, no metadata.

    def __init__(self, url, table, chunk_size):
        import sqlalchemy as sa
        self.engine = sa.create_engine(url)
        self.table, self.chunk_size = table, chunk_size
        self.conn = self.engine.raw_connection()
        blob = "BYTEA" if self.engine.dialect.name == "postgresql" else "BLOB"
        self.mark = "?" if self.engine.dialect.name == "sqlite" else "%s"
        cur = self.conn.cursor()
        cur.execute(
            f"CREATE TABLE {table} (id VARCHAR(36), n INTEGER, data {blob} NOT NULL, "
            "PRIMARY KEY (id, n))"
        )
        self.conn.commit()

    def create(self, src, name=None, ctype=None):
        import uuid
        fid, m = str(uuid.uuid4()), self.mark
        cur = self.conn.cursor()
        sql = f"INSERT INTO {self.table} (id, n, data) VALUES ({m}, {m}, {m})"
        if isinstance(src, bytes):
            cur.execute(sql, (fid, 0, src))
        else:
            n, batch, per_batch = 0, [], max(1, 2 * 2**20 // self.chunk_size)
            while data := src.read(self.chunk_size):
                batch.append((fid, n, data))
                n += 1
                if len(batch) == per_batch:
                    cur.executemany(sql, batch)
                    batch = []
            if batch:
                cur.executemany(sql, batch)
        self.conn.commit()
        return fid

    def get(self, fid):
        return PlainFile(self, fid)

    def delete(self, fid):
        cur = self.conn.cursor()
        cur.execute(f"DELETE FROM {self.table} WHERE id = {self.mark}", (fid,))
        self.conn.commit()


class PlainFile:
    # Reads one chunk row per SELECT, as it is needed.

    def __init__(self, plain, fid):
        self.plain, self.fid, self.n, self.buffer, self.at = plain, fid, 0, b"", 0

    def read(self, size=-1):
        if self.at == len(self.buffer):
            m = self.plain.mark
            cur = self.plain.conn.cursor()
            sql = f"SELECT data FROM {self.plain.table} WHERE id = {m} AND n = {m}"
            cur.execute(sql, (self.fid, self.n))
            row = cur.fetchone()
            self.plain.conn.commit()
            if row is None:
                return b""
            self.buffer, self.n, self.at = bytes(row[0]), self.n + 1, 0
        if self.at == 0 and (size < 0 or size >= len(self.buffer)):
            self.at = len(self.buffer)
            return self.buffer
        size = len(self.buffer) - self.at if size < 0 else size
        data = self.buffer[self.at : self.at + size]
        self.at += len(data)
        return data

    def close(self):
        pass


def make_storage(backend):
    name = backend["name"]
    if name == "plain-sql":
        return PlainSQL(backend["url"], backend["table"], backend["chunk_size"])
    if name == "sql":
        from depot.io.sql import SQLStorage
        return SQLStorage(url=backend["url"], prefix=backend["table"] + "_",
                          chunk_size=backend["chunk_size"])
    if name == "memory":
        from depot.io.memory import MemoryFileStorage
        return MemoryFileStorage()
    if name == "local":
        from depot.io.local import LocalFileStorage
        # Only depot has the keyword.
        extra = {"fsync": backend["fsync"]} if "fsync" in backend else {}
        return LocalFileStorage(backend["path"], **extra)
    if name == "s3":
        from depot.io.boto3 import S3Storage
        return S3Storage(**backend["settings"])
    if name == "gcs":
        os.environ["STORAGE_EMULATOR_HOST"] = backend["emulator"]
        from google.auth.credentials import AnonymousCredentials
        from depot.io.gcs import GCSStorage
        return GCSStorage(credentials=AnonymousCredentials(), **backend["settings"])
    from depot.io.gridfs import GridFSStorage
    return GridFSStorage(backend["uri"], "filedepot")

kind = spec["kind"]
if kind == "about":
    from importlib import metadata
    have = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
    dists = ("filedepot", "depot", "boto3", "pymongo", "mongomock", "google-cloud-storage")
    out.update({"python": platform.python_version()}, **{d: have[d] for d in dists if d in have})
elif kind == "small":
    storage, n, data = make_storage(spec["backend"]), spec["files"], os.urandom(1024)
    start = time.perf_counter()
    ids = [storage.create(data, "f.bin", "application/octet-stream") for _ in range(n)]
    out["create"], start = n / (time.perf_counter() - start), time.perf_counter()
    for fid in ids:
        f = storage.get(fid)
        if len(f.read()) != 1024:
            sys.exit(f"{fid}: read back the wrong size")
        f.close()
    out["read"] = n / (time.perf_counter() - start)
    for fid in ids if spec["delete"] else ():
        storage.delete(fid)
elif kind == "big":
    storage = make_storage(spec["backend"])
    out["rss_before"] = rss_mib()
    size = os.path.getsize(spec["source"])
    start = time.perf_counter()
    with open(spec["source"], "rb") as src:
        fid = storage.create(src, "big.bin", "application/octet-stream")
    out["big_write"], start = size / 2**20 / (time.perf_counter() - start), time.perf_counter()
    f, got = storage.get(fid), 0
    while chunk := f.read(spec["chunk"]):
        got += len(chunk)
    f.close()
    out["big_read"], out["big_rss"] = size / 2**20 / (time.perf_counter() - start), rss_mib()
    if got != size:
        sys.exit(f"read back {got} bytes of {size}")
    if spec["delete"]:
        storage.delete(fid)
print(json.dumps(out))
"""


@dataclass
class Impl:
    """One side of the comparison: an interpreter and how to start it."""

    name: str
    tag: str
    python: str
    flags: list[str]
    env: dict[str, str]
    cwd: str
    #: The checkout whose depot the child must import (None: not this repository's).
    repo: Path | None = None


# The table's lines per backend: label ({big}: the big file's size), key, and the target
# depot must meet: "ratio", its figure at least filedepot's; "rss", below RSS_LIMIT MiB.
ROWS = [
    ("create 1 KiB (files/s)", "create", "ratio"),
    ("get+read 1 KiB (files/s)", "read", "ratio"),
    ("store {big} MiB from a file (MiB/s)", "big_write", "ratio"),
    ("read {big} MiB in 64 KiB chunks (MiB/s)", "big_read", "ratio"),
    ("RSS before the big file (MiB)", "rss_before", ""),
    ("peak RSS, {big} MiB file (MiB)", "big_rss", "rss"),
]


# Figures by implementation tag, then (backend, table key): one value per round.
Found = dict[str, dict[tuple[str, str], list[float]]]


def run_child(impl: Impl, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and check it imported the right depot."""
    # Flush earlier writes first so their writeback is not billed to this measurement.
    os.sync()
    argv = [impl.python, *impl.flags, "-c", CHILD, json.dumps(spec)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=impl.env, cwd=impl.cwd)
    if proc.returncode != 0:
        sys.exit(f"{impl.name} child failed on {spec}:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    imported = Path(result.pop("depot_file")).resolve()
    if impl.repo is None and imported.is_relative_to(REPO):
        sys.exit(f"{impl.name} imported the wrong depot")
    if impl.repo is not None and not imported.is_relative_to(impl.repo):
        sys.exit(f"{impl.name} imported the wrong depot")
    return result


@dataclass
class Bench:
    """What every round shares: the backends, where files go, the S3 server's settings."""

    backends: list[str]
    tmp: Path
    run: str  # in bucket and database names, so runs sharing a server never meet
    files: int
    source: str
    s3: dict[str, str] | None = None
    sql_chunk_size: int = 0
    postgresql: str = ""  # the URL of this run's database


def backend_spec(bench: Bench, backend: str, impl: Impl, name: str, gcs: str) -> dict[str, Any]:
    """Say which storage a child makes; ``name`` is this side's for the workload and round."""
    if backend.startswith("local"):
        nosync = {"fsync": False} if backend == "local-nosync" and impl.tag == "ours" else {}
        return {"name": "local", "path": str(bench.tmp / name), **nosync}
    if backend == "s3":
        return {"name": "s3", "settings": {**(bench.s3 or {}), "bucket": name}}
    if backend == "gcs":
        settings = {"project_id": "depot-bench", "bucket": name, "policy": "private"}
        return {"name": "gcs", "emulator": gcs, "settings": settings}
    if backend in SQL_BACKENDS:
        table = name.replace("-", "_").replace("bench_", "b_").replace("postgresql", "pg")
        if backend == "sql-sqlite":
            url = f"sqlite:///{bench.tmp / (table + '.sqlite')}"
        else:
            url = bench.postgresql
        kind = "plain-sql" if impl.tag == "plain" else "sql"
        return {"name": kind, "url": url, "table": table, "chunk_size": bench.sql_chunk_size}
    db = "/" + name.replace("-", "_")
    if backend == "gridfs":
        uri = urlsplit(MONGODB_URI)._replace(path=db).geturl() if MONGODB_URI else None
        return {"name": "gridfs", "uri": uri or f"mongodb://localhost:27017{db}"}
    return {"name": backend}


def one_round(
    n: int, impls: tuple[Impl, Impl], bench: Bench, found: Found, sql: tuple[Impl, ...]
) -> None:
    """Run each backend's workloads for both sides; who goes first swaps every round.

    The SQL backends' other sides are ``sql``: the plain statements, and the baseline
    checkout if one was given.
    """
    for backend in bench.backends:
        pair = (*sql, impls[1]) if backend in SQL_BACKENDS else impls
        for kind in ("small", "big"):
            for impl in pair if n % 2 == 0 else pair[::-1]:
                name = f"bench-{bench.run}-{impl.tag}-{backend}-{kind}-{n}"
                emulator = gcs_emulator(bench.tmp) if backend == "gcs" else nullcontext("")
                with emulator as gcs:
                    spec = {
                        "kind": kind,
                        "backend": backend_spec(bench, backend, impl, name, gcs),
                        "mongomock": backend == "gridfs" and not MONGODB_URI,
                        "files": bench.files,
                        "source": bench.source,
                        "chunk": CHUNK,
                        # Servers are left as found. Local big files go once both sides
                        # ran (see storage.py's one_round).
                        "delete": not backend.startswith(("local", "sql-sqlite")),
                    }
                    figures = run_child(impl, spec)
                for key, value in figures.items():
                    found.setdefault(impl.tag, {}).setdefault((backend, key), []).append(
                        float(value)
                    )
        if backend.startswith("local"):
            for impl in impls:
                shutil.rmtree(bench.tmp / f"bench-{bench.run}-{impl.tag}-{backend}-big-{n}")


def gcs_problem() -> str | None:
    """Say why GCS cannot be measured, if it cannot."""
    if not (REPO / "depot" / "io" / "gcs.py").exists():
        return "depot has no depot.io.gcs yet"
    if not (GCS_EMULATOR or importlib.util.find_spec("gcp_storage_emulator")):
        return "no emulator: pip install gcp-storage-emulator, or set DEPOT_TEST_GCS_EMULATOR"
    return None


def gcs_emulator(tmp: Path) -> AbstractContextManager[str]:
    """Yield the URL of DEPOT_TEST_GCS_EMULATOR's emulator, or of a new gcp-storage-emulator.

    gcp-storage-emulator slows down with every object it ever stored (deleted or not, in
    any bucket): 400 creates/s on a new one, 60/s after 800. So each child gets its own.
    """
    if GCS_EMULATOR:
        return nullcontext(GCS_EMULATOR)
    options = ["start", "--host", "127.0.0.1", "--port", "{port}", "--in-memory", "--quiet"]
    return server(tmp, "gcp_storage_emulator", *options)


@contextmanager
def server(tmp: Path, module: str, *options: str) -> Iterator[str]:
    """Run ``python -m module`` on a free port of 127.0.0.1; yield its URL, kill it after.

    ``{port}`` in ``options`` stands for the port.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", module, *(o.format(port=port) for o in options)]
    log = tmp / f"{module}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit(f"{module} did not start:\n{log.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def prepare_reference(python: str | None, tmp: Path, backends: list[str]) -> str:
    """Return filedepot's interpreter (building a venv if none given), with what it needs.

    Missing packages are installed at our venv's versions, so both sides run the same
    boto3 and pymongo and the figures compare depot's code, not its dependencies'.
    """
    if python is None:
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "ref-venv")], check=True)
        python = str(tmp / "ref-venv" / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "-q", "filedepot==0.12.0"], check=True)
    needed = {mod: dist for b in backends for mod, dist in NEEDS.get(b, {}).items()}
    probe = {dist: [python, "-I", "-c", f"import {mod}"] for mod, dist in needed.items()}
    missing = [
        d for d, argv in probe.items() if subprocess.run(argv, capture_output=True).returncode
    ]
    if missing:
        pins = [f"{dist}=={metadata.version(dist)}" for dist in missing]
        print(f"installing into {python}: {' '.join(pins)}", file=sys.stderr, flush=True)
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *pins], check=True, cwd=tmp)
    return python


def make_impls(ref_python: str, tmp: Path) -> tuple[Impl, Impl]:
    """Describe how to start filedepot (isolated from the repo) and ours (the repo first)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ref = Impl("filedepot 0.12", "ref", ref_python, ["-I"], env, str(tmp))
    ours_env = {**env, "PYTHONPATH": str(REPO)}
    return ref, Impl("depot", "ours", sys.executable, [], ours_env, str(REPO), REPO)


def fmt(value: float) -> str:
    """Format a figure with thousands separators, keeping a decimal for small values."""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def judge(backend: str, target: str, ref: float, ours: float) -> list[str]:
    """Return the ratio, target and verdict columns for one row."""
    ratio = f"{ours / ref:.2f}x" if ref else "-"
    # The memory store, and mongomock, keep the big file in the child itself.
    if target == "rss" and (backend == "memory" or (backend == "gridfs" and not MONGODB_URI)):
        return [ratio, "n/a: in-process", "-"]
    if target == "rss":
        return [ratio, f"< {RSS_LIMIT} MiB", "yes" if ours < RSS_LIMIT else "NO"]
    if target == "ratio":
        return [ratio, ">= 1x", "yes" if ref and ours >= ref else "NO"]
    return [ratio, "-", ""]


def print_table(impls: tuple[Impl, Impl], backends: list[str], big: int, found: Found) -> None:
    """Print the medians side by side as plain text."""
    ref, ours = impls
    lines = [["backend", "workload", ref.name, ours.name, "ratio", "target", "ok?"]]
    for backend in backends:
        for label, key, target in ROWS:
            r = statistics.median(found[ref.tag][backend, key])
            o = statistics.median(found[ours.tag][backend, key])
            row = [backend, label.format(big=big), fmt(r), fmt(o)]
            lines.append([*row, *judge(backend, target, r, o)])
    print_lines(lines)


def print_sql_table(backends: list[str], big: int, found: Found) -> None:
    """Print SQLStorage beside the plain statements and depot's local storage."""
    base = "base" in found
    head = ["backend", "workload", "plain SQL"]
    head += ["baseline", "ratio", "depot sql", "ratio"] if base else ["depot sql", "ratio"]
    lines = [[*head, "depot local", "target", "ok?"]]
    for backend in backends:
        for label, key, target in ROWS:
            p = statistics.median(found["plain"][backend, key])
            o = statistics.median(found["ours"][backend, key])
            local = found["ours"].get(("local", key))
            row = [backend, label.format(big=big), fmt(p)]
            if base:
                b = statistics.median(found["base"][backend, key])
                row += [fmt(b), f"{b / p:.2f}x" if p else "-"]
            row += [fmt(o), f"{o / p:.2f}x" if p else "-"]
            row.append(fmt(statistics.median(local)) if local else "-")
            if target == "ratio":
                row += [f">= {SQL_TARGET}x", "yes" if o >= SQL_TARGET * p else "NO"]
            elif target == "rss":
                row += [f"<= {RSS_LIMIT} MiB", "yes" if o <= RSS_LIMIT else "NO"]
            else:
                row += ["-", ""]
            lines.append(row)
    print_lines(lines)


def print_lines(lines: list[list[str]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        cells = [c.rjust(w) for c, w in zip(line, widths, strict=True)]
        cells[:2] = [c.ljust(w) for c, w in zip(line[:2], widths, strict=False)]
        print(" | ".join(cells).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))


def print_header(args: argparse.Namespace, impls: tuple[Impl, Impl], bench: Bench) -> None:
    """Print what the figures depend on: machine, versions, servers and sizes."""
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(f"uname -srm: {platform.system()} {platform.release()} {platform.machine()}")
    print(f"nproc: {len(os.sched_getaffinity(0))}")
    for impl in impls:
        about = run_child(impl, {"kind": "about"})
        print(
            f"{impl.name}: Python {about.pop('python')}, "
            + ", ".join(f"{k} {v}" for k, v in about.items())
        )
    if bench.s3:
        print(f"S3: moto {metadata.version('moto')} server at {bench.s3['endpoint_url']}")
    if "gcs" in bench.backends and GCS_EMULATOR:
        print(f"GCS: the emulator at {GCS_EMULATOR}")
    elif "gcs" in bench.backends:
        version = metadata.version("gcp-storage-emulator")
        print(f"GCS: gcp-storage-emulator {version}, in memory, a new one for each child")
    if "gridfs" in bench.backends:
        where = f"MongoDB at {urlsplit(MONGODB_URI).hostname}" if MONGODB_URI else "mongomock"
        print(f"GridFS: {where}" + ("" if MONGODB_URI else " in each child"))
    if any(b in SQL_BACKENDS for b in bench.backends):
        import sqlalchemy

        print(
            f"SQL: SQLAlchemy {sqlalchemy.__version__}, chunks of {bench.sql_chunk_size} bytes"
            + (f"; PostgreSQL at {bench.postgresql.split('@')[-1]}" if bench.postgresql else "")
        )
    print(f"{args.files} files of 1 KiB; big file {args.big_mib} MiB, read in 64 KiB chunks")
    print(f"medians of {args.rounds} alternating rounds\n", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--reference-python", help="interpreter with filedepot 0.12 installed")
    parser.add_argument("--backends", default=",".join(ALL_BACKENDS), help="comma-separated")
    parser.add_argument(
        "--sql-chunk-size", type=int, default=0, help="SQLStorage's chunk_size (default: its own)"
    )
    parser.add_argument(
        "--sql-baseline", type=Path, help="another depot checkout, measured on the SQL backends"
    )
    args = parser.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(ALL_BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {ALL_BACKENDS}")
    return args


def sql_default_chunk_size(ours: Impl) -> int:
    """SQLStorage's default chunk_size, asked of the repository's depot."""
    code = "from depot.io.sql import DEFAULT_CHUNK_SIZE as s; print(s)"
    argv = [ours.python, "-c", code]
    return int(subprocess.run(argv, capture_output=True, text=True, env=ours.env).stdout)


@contextmanager
def postgresql_database(run: str) -> Iterator[str]:
    """Create this run's PostgreSQL database; yield its URL; drop it at the end."""
    import sqlalchemy as sa

    url = sa.make_url(POSTGRESQL_URL)
    name = f"bench_{run}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def drop_databases(run: str) -> None:
    """Drop this run's databases from the real MongoDB, if one was used."""
    if MONGODB_URI:
        import pymongo

        with pymongo.MongoClient(MONGODB_URI) as client:
            for name in client.list_database_names():
                if name.startswith(f"bench_{run}_"):
                    client.drop_database(name)


def main() -> None:
    args = parse_args()
    backends, problem = list(args.backends), "gcs" in args.backends and gcs_problem()
    if problem:
        print(f"GCS skipped: {problem}.", file=sys.stderr)
        backends.remove("gcs")
    # Unwound in reverse, however the run ends: databases dropped, moto killed, files gone.
    with ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="depot-bench-")))
        bench = Bench(backends, tmp, uuid.uuid4().hex[:8], args.files, str(tmp / "big.bin"))
        impls = make_impls(prepare_reference(args.reference_python, tmp, backends), tmp)
        if "s3" in backends:
            moto = server(tmp, "moto.server", "-H", "127.0.0.1", "-p", "{port}")
            bench.s3 = {**S3_SETTINGS, "endpoint_url": cleanup.enter_context(moto)}
        if "gridfs" in backends:
            cleanup.callback(drop_databases, bench.run)
        sql = [b for b in backends if b in SQL_BACKENDS]
        if sql:
            bench.sql_chunk_size = args.sql_chunk_size or sql_default_chunk_size(impls[1])
            if "local" not in backends:  # shown beside them
                backends.insert(0, "local")
        if "sql-postgresql" in backends:
            bench.postgresql = cleanup.enter_context(postgresql_database(bench.run))
        ours = impls[1]
        sql_sides = [Impl("plain SQL", "plain", ours.python, [], ours.env, ours.cwd, REPO)]
        if args.sql_baseline:
            checkout = args.sql_baseline.resolve()
            env = {**ours.env, "PYTHONPATH": str(checkout)}
            name = f"depot at {checkout}"
            sql_sides.append(Impl(name, "base", ours.python, [], env, str(checkout), checkout))
        print_header(args, impls, bench)
        if args.sql_baseline:
            print(f"SQL baseline: {sql_sides[-1].name}\n", flush=True)
        # Incompressible, written once: both sides store the same bytes.
        with open(bench.source, "wb") as f:
            for _ in range(args.big_mib):
                f.write(os.urandom(2**20))
        found: Found = {"ref": {}, "ours": {}, **({"base": {}} if args.sql_baseline else {})}
        for n in range(args.rounds):
            one_round(n, impls, bench, found, tuple(sql_sides))
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        others = [b for b in backends if b not in SQL_BACKENDS]
        if others:
            print_table(impls, others, args.big_mib, found)
        if sql:
            print(f"\nSQLStorage against the plain statements (target >= {SQL_TARGET}x):")
            print_sql_table(sql, args.big_mib, found)


if __name__ == "__main__":
    main()
