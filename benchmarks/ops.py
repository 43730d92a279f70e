"""copy_depot from local into S3 (moto) with 1 and 8 jobs, against raw boto3; collect_garbage.

Run from the repository root with the project's interpreter::

    python benchmarks/ops.py [--files 10000] [--size 1024] [--big-mib 1024] [--rows 200000]
                             [--jobs 1 8] [--rounds 1]

One moto server (a single Python process) takes every upload. Each copy runs
in a fresh child process, into a new bucket, so each row measures one kind of
work (files/s for the small files, MB/s for the big one) and its peak RSS
(``ru_maxrss``) is that copy's alone. Beside each depot row, the same child
does the work with boto3 alone, in the same run, alternating: for the small
files a ``put_object`` of each file's bytes (read from the local depot's data
files) with the same number of threads sharing one client, for the big file
an ``upload_file`` with boto3's default transfer settings (threads, 8 MiB
parts). moto is the ceiling on this machine: depot/raw is what depot controls.
``start RSS`` is the child's once boto3 and a client are loaded, before any
work: the floor. ``req/file`` counts the S3 requests the child made per file.

The garbage collection row times ``collect_garbage`` (listing mode) over a
SQLite table of ``--rows`` rows, each referencing a file, against a memory
depot of 1,000 files, in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class Peak(threading.Thread):
    """Samples this process's largest RSS."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def stop(self) -> float:
        self.running = False
        self.join()
        return self.peak / 2**20


def _rss() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _max_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: argparse.Namespace) -> None:
    """One copy, in this fresh process; prints its figures as JSON."""
    endpoint = json.loads(args.endpoint)
    jobs = args.jobs[0]
    bucket = f"depot-bench-{uuid.uuid4().hex[:12]}"
    requests = 0

    def count(**kwargs: Any) -> None:
        nonlocal requests
        requests += 1

    if args.child == "depot":
        from depot.io.local import LocalFileStorage
        from depot.manager import DepotManager
        from depot.ops import copy_depot

        source = LocalFileStorage(args.source, fsync=False)
        target = DepotManager.configure(
            bucket,
            {
                "depot.backend": "s3",
                "depot.bucket": bucket,
                "depot.policy": "private",
                **{f"depot.{key}": value for key, value in endpoint.items()},
            },
        )
        client = target._client  # type: ignore[attr-defined]
        client.meta.events.register("before-call.s3", count)
        start_rss = _rss()
        began = time.perf_counter()
        summary = copy_depot(source, target, jobs=jobs)
        took = time.perf_counter() - began
        if not summary.ok:
            raise SystemExit(f"copy failed: {summary.failed[:3]}")
        # A list before the summary counted files (commit 19c3b8e): for before/after runs.
        copied = summary.copied
        files, size = copied if isinstance(copied, int) else len(copied), summary.bytes_copied
    else:
        import boto3
        from botocore.config import Config

        client = boto3.session.Session(
            aws_access_key_id=endpoint["access_key_id"],
            aws_secret_access_key=endpoint["secret_access_key"],
            region_name=endpoint["region_name"],
        ).client(
            "s3",
            endpoint_url=endpoint["endpoint_url"],
            config=Config(max_pool_connections=max(10, jobs)),
        )
        client.create_bucket(Bucket=bucket)
        client.meta.events.register("before-call.s3", count)
        start_rss = _rss()
        paths = [entry.path for entry in os.scandir(args.source) if entry.is_dir()]
        began = time.perf_counter()
        if len(paths) == 1:
            client.upload_file(os.path.join(paths[0], "file"), bucket, "big")
            size = os.path.getsize(os.path.join(paths[0], "file"))
        else:
            # Each thread takes the next path: no queue of 10,000 tasks in memory.
            lock, each, sizes = threading.Lock(), iter(paths), []

            def put() -> None:
                while True:
                    with lock:
                        path = next(each, None)
                    if path is None:
                        return
                    with open(os.path.join(path, "file"), "rb") as f:
                        data = f.read()
                    client.put_object(
                        Bucket=bucket,
                        Key=os.path.basename(path),
                        Body=data,
                        Metadata={"x-depot-filename": "small.bin"},
                    )
                    sizes.append(len(data))

            threads = [threading.Thread(target=put) for _ in range(jobs)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            size = sum(sizes)
        took = time.perf_counter() - began
        files = len(paths)
    figures = {"took": took, "files": files, "bytes": size, "requests": requests}
    print(json.dumps({**figures, "start_rss": start_rss, "peak_rss": _max_rss()}))


def run_child(kind: str, source: Path, endpoint: dict[str, str], jobs: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--source", str(source)]
    command += ["--endpoint", json.dumps(endpoint), "--jobs", str(jobs)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def gc_rate(rows: int, tmp: Path) -> tuple[float, float]:
    import sqlalchemy as sa

    from depot.manager import DepotManager
    from depot.ops import collect_garbage, sqlalchemy_references
    from tests.databases import sqlite_engine
    from tests.ops.models import OpsBase, Photo

    engine = sqlite_engine(tmp / "gc.sqlite")
    OpsBase.metadata.create_all(engine)
    media = DepotManager.configure("media", {"depot.backend": "memory"})
    files = [media.create(b"x") for _ in range(1000)]

    def value(n: int) -> str:
        file_id = files[n % len(files)] if n % 2 else str(uuid.uuid4())
        path = f"media/{file_id}"
        return json.dumps({"depot_name": "media", "files": [path], "file_id": file_id,
                           "path": path, "filename": f"f{n}.png", "content_type": "image/png",
                           "uploaded_at": "2020-01-01 00:00:00", "_public_url": None})  # fmt: skip

    insert = sa.insert(Photo.__table__).values(image=sa.bindparam("text", type_=sa.Text()))
    with engine.begin() as conn:
        for start in range(0, rows, 10_000):
            stop = min(rows, start + 10_000)
            conn.execute(insert, [{"id": n, "text": value(n)} for n in range(start, stop)])
    peak = Peak()
    peak.start()
    began = time.perf_counter()
    summary = collect_garbage("media", sqlalchemy_references(engine, [Photo]))
    took = time.perf_counter() - began
    rss = peak.stop()
    assert summary.rows == rows
    engine.dispose()
    return rows / took, rss


def fill(storage: Any, files: int, size: int) -> None:
    """Store ``files`` files of ``size`` random bytes."""
    for _ in range(files):
        storage.create(os.urandom(size), "small.bin")


def store_big(storage: Any, tmp: Path, mib: int) -> str:
    """Store a file of ``mib`` MiB of random bytes, streamed from disk; return its id."""
    path = tmp / "big.bin"
    with path.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    try:
        with path.open("rb") as f:
            return str(storage.create(f, "big.bin"))
    finally:
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per small file")
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", choices=["depot", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from depot.io.local import LocalFileStorage
    from tests.backends.s3 import MotoServer

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="depot-ops-")))
        moto = stack.enter_context(MotoServer(tmp))
        endpoint = {
            "endpoint_url": moto.url,
            "access_key_id": "bench",
            "secret_access_key": "bench",
            "region_name": "us-east-1",
        }
        small = LocalFileStorage(tmp / "small", fsync=False)
        fill(small, args.files, args.size)
        big = LocalFileStorage(tmp / "big", fsync=False)
        store_big(big, tmp, args.big_mib)
        header = (
            f"{'copy local -> S3 (moto)':<26} {'jobs':>4} {'round':>5}  {'what':<6} "
            f"{'rate':>14} {'depot/raw':>9} {'req/file':>8} {'start RSS':>9} {'peak RSS':>9}"
        )
        print(header)
        print("-" * len(header), flush=True)
        for jobs in args.jobs:
            for label, source, unit in (
                (f"{args.files:,} files of {args.size} B", tmp / "small", "files"),
                (f"1 file of {args.big_mib} MiB", tmp / "big", "MB"),
            ):
                for round_ in range(1, args.rounds + 1):
                    order = ("raw", "depot") if round_ % 2 else ("depot", "raw")
                    rates = {}
                    for kind in order:
                        got = run_child(kind, source, endpoint, jobs)
                        if unit == "files":
                            rates[kind] = got["files"] / got["took"]
                            rate = f"{rates[kind]:,.0f} files/s"
                        else:
                            rates[kind] = got["bytes"] / 1e6 / got["took"]
                            rate = f"{rates[kind]:,.0f} MB/s"
                        ratio = f"{rates['depot'] / rates['raw']:.2f}x" if len(rates) == 2 else ""
                        per_file = got["requests"] / max(1, got["files"])
                        print(
                            f"{label:<26} {jobs:>4} {round_:>5}  {kind:<6} {rate:>14} {ratio:>9} "
                            f"{per_file:>8.1f} {got['start_rss']:>5.0f} MiB "
                            f"{got['peak_rss']:>5.0f} MiB",
                            flush=True,
                        )
                        # moto keeps every object in memory: drop them between rows.
                        moto.stop()
                        moto.start()
        rows_per_s, rss = gc_rate(args.rows, tmp)
        rate = f"{rows_per_s:,.0f} rows/s"
        label = f"gc over {args.rows:,} SQLite rows"
        print(f"{label:<26} {'':>4} {'':>5}  {'depot':<6} {rate:>14} {'':>28} {rss:>5.0f} MiB")


if __name__ == "__main__":
    main()
