"""copy_depot from local into S3 (moto) with 1 and 8 jobs, and collect_garbage's rate.

Run from the repository root with the project's interpreter::

    python benchmarks/ops.py [--files 10000] [--size 1024] [--big-mib 1024] [--rows 200000]

The small files and the big file are copied in separate runs, each into a new
bucket, so each row of the table measures one kind of work: files/s for the
small files, MB/s for the big one. Peak RSS is this process's (psutil, sampled
every 10 ms) during that copy; moto's own memory is not counted (it keeps every
object in memory). The garbage collection row times ``collect_garbage`` (listing
mode) over a SQLite table of ``--rows`` rows, each referencing a file, against
a memory depot of 1,000 files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
from depot.io.local import LocalFileStorage  # noqa: E402
from depot.manager import DepotManager  # noqa: E402
from depot.ops import collect_garbage, copy_depot, sqlalchemy_references  # noqa: E402
from tests.backends.s3 import MotoServer, client_for, remove_bucket  # noqa: E402


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


def s3_depot(endpoint: dict[str, str], bucket: str) -> Any:
    return DepotManager.configure(
        bucket,
        {
            "depot.backend": "s3",
            "depot.bucket": bucket,
            "depot.policy": "private",
            **{f"depot.{key}": value for key, value in endpoint.items()},
        },
    )


def timed_copy(source: Any, endpoint: dict[str, str], ids: list[str], jobs: int) -> Any:
    bucket = f"depot-bench-{uuid.uuid4().hex[:12]}"
    target = s3_depot(endpoint, bucket)
    peak = Peak()
    peak.start()
    start = time.perf_counter()
    summary = copy_depot(source, target, jobs=jobs, ids=ids)
    took = time.perf_counter() - start
    rss = peak.stop()
    if not summary.ok:
        raise SystemExit(f"copy failed: {summary.failed[:3]}")
    remove_bucket(client_for(endpoint), bucket)
    return took, summary.bytes_copied, rss


def gc_rate(rows: int, tmp: Path) -> tuple[float, float]:
    import sqlalchemy as sa

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per small file")
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="depot-ops-")))
        moto = stack.enter_context(MotoServer(tmp))
        endpoint = {
            "endpoint_url": moto.url,
            "access_key_id": "bench",
            "secret_access_key": "bench",
            "region_name": "us-east-1",
        }
        source = LocalFileStorage(tmp / "source", fsync=False)
        small = [source.create(os.urandom(args.size), "small.bin") for _ in range(args.files)]
        big_path = tmp / "big.bin"
        with big_path.open("wb") as f:
            for _ in range(args.big_mib):
                f.write(os.urandom(1 << 20))
        with big_path.open("rb") as f:
            big = source.create(f, "big.bin")
        big_path.unlink()
        print(f"{'copy local -> S3 (moto)':<34} {'jobs':>4} {'rate':>14} {'peak RSS':>10}")
        for jobs in args.jobs:
            took, _, rss = timed_copy(source, endpoint, small, jobs)
            rate = f"{args.files / took:,.0f} files/s"
            print(f"{f'{args.files:,} files of {args.size} B':<34} {jobs:>4} {rate:>14} "
                  f"{rss:>7.0f} MiB", flush=True)  # fmt: skip
            took, size, rss = timed_copy(source, endpoint, [big], jobs)
            rate = f"{size / 1e6 / took:,.0f} MB/s"
            print(f"{f'1 file of {args.big_mib} MiB':<34} {jobs:>4} {rate:>14} "
                  f"{rss:>7.0f} MiB", flush=True)  # fmt: skip
        rows_per_s, rss = gc_rate(args.rows, tmp)
        print(f"{f'gc over {args.rows:,} SQLite rows':<34} {'':>4} "
              f"{f'{rows_per_s:,.0f} rows/s':>14} {rss:>7.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
