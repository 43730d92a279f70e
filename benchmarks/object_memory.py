"""Peak memory of depot's object-store backends (S3, GCS) storing and reading one big file.

Run from the repository root, with the interpreter that has depot's dependencies::

    python benchmarks/object_memory.py [--sizes 128,512] [--backends s3,gcs]

The servers (moto's S3 server, gcp-storage-emulator in memory) run in processes of their
own; each measurement runs in a fresh child, which reports the peak RSS of its whole life
(``ru_maxrss``), the RSS it had before the measured operation (Python, boto3 or
google-cloud-storage imported, the storage made), and the MiB/s of the operation. The
operations: ``create()`` from a stream that cannot seek, from an open file, from bytes
or a bytearray (the content itself is then in memory: the peak above it is what
counts; the figure shown is the peak less the content's size); reading
the file back in 64 KiB blocks, and by ``iter_range()``; and, as one program would, a
create from an open file then a read, in one process. The target is 64 MiB of peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_MIB = 64
OPERATIONS = ["stream", "file", "bytes", "bytearray", "read", "iter_range", "file+read"]

# Takes a JSON spec as its argument, prints its figures as JSON.
CHILD = r"""
import json, os, resource, sys, time
spec = json.loads(sys.argv[1])
MiB = 1024 * 1024

def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

def current_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB

class Generated:
    # size bytes made as they are read, from one random MiB: never all in memory.
    def __init__(self, size):
        self.size, self.sent, self._block = size, 0, os.urandom(MiB)
    def read(self, n=-1):
        n = self.size - self.sent if n < 0 else min(n, self.size - self.sent)
        pieces, got, view = [], 0, memoryview(self._block)
        while got < n:  # views of the block, joined once: the read's bytes, no more
            offset = (self.sent + got) % MiB
            pieces.append(view[offset : offset + n - got])
            got += len(pieces[-1])
        self.sent += n
        return b"".join(pieces)
    def seekable(self):
        return False

if spec["backend"] == "s3":
    from depot.io.boto3 import S3Storage
    storage = S3Storage(**spec["settings"])
else:
    os.environ["STORAGE_EMULATOR_HOST"] = spec["emulator"]
    from depot.io.gcs import GCSStorage
    storage = GCSStorage(**spec["settings"])
import depot
size = spec["mib"] * MiB
op = spec["op"]
data = None
if op == "bytes":
    data = os.urandom(size)
elif op == "bytearray":  # filled in place: never a bytes copy beside it
    data = bytearray(size)
    for offset in range(0, size, MiB):
        data[offset : offset + MiB] = os.urandom(MiB)
before = current_mib()
extra = data and len(data) / MiB or 0
started = time.perf_counter()
out = {"depot_file": depot.__file__}
if op == "stream":
    out["file_id"] = storage.create(Generated(size), "big.bin")
elif op in ("file", "file+read"):
    with open(spec["path"], "rb") as f:
        out["file_id"] = storage.create(f, "big.bin")
elif op in ("bytes", "bytearray"):
    out["file_id"] = storage.create(data, "big.bin")
if op in ("read", "file+read"):
    stored = storage.get(spec.get("file_id") or out["file_id"])
    got = 0
    while block := stored.read(64 * 1024):
        got += len(block)
    assert got == size, got
elif op == "iter_range":
    stored = storage.get(spec["file_id"])
    got = sum(len(b) for b in stored.iter_range(0, size))
    assert got == size, got
seconds = time.perf_counter() - started
moved = spec["mib"] * (2 if op == "file+read" else 1)
out.update(before=before, peak=rss_mib() - extra, mib_s=moved / seconds)
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(command: list[str], port: int, log: Path) -> Iterator[str]:
    """Run a server until the block ends; yields its URL once it accepts connections."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[2]} did not start: see {log}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_child(spec: dict[str, object]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{spec['backend']} {spec['op']} failed:\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="128,512", help="MiB, comma-separated")
    parser.add_argument("--backends", default="s3,gcs")
    parser.add_argument("--ops", default=",".join(OPERATIONS))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ops = args.ops.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            port = free_port()
            if backend == "s3":
                command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
            else:
                command = [sys.executable, "-m", "gcp_storage_emulator", "start"]
                command += ["--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"]
            with server(command, port, Path(tmp) / f"{backend}.log") as url:
                for mib in sizes:
                    path = Path(tmp) / f"{mib}.bin"
                    if not path.exists():
                        with open(path, "wb") as f:
                            for _ in range(mib):
                                f.write(os.urandom(1024 * 1024))
                    if backend == "s3":
                        settings = {
                            "access_key_id": "k",
                            "secret_access_key": "s",
                            "region_name": "us-east-1",
                            "endpoint_url": url,
                        }
                    else:
                        settings = {"project_id": "depot-bench"}
                    bucket = f"depot-mem-{uuid.uuid4().hex[:12]}"
                    settings.update(bucket=bucket, policy="private")
                    spec = {
                        "backend": backend,
                        "settings": settings,
                        "emulator": url,
                        "mib": mib,
                        "path": str(path),
                    }
                    file_id = None
                    for op in ops:
                        if op in ("read", "iter_range") and file_id is None:
                            file_id = run_child({**spec, "op": "file"})["file_id"]
                        result = run_child({**spec, "op": op, "file_id": file_id})
                        if op == "file":
                            file_id = result["file_id"]
                        rows.append((backend, mib, op, result))
                        print(
                            f"{backend:4} {mib:5} MiB {op:11} peak {result['peak']:6.1f} MiB "
                            f"(before {result['before']:5.1f}) {result['mib_s']:7.1f} MiB/s "
                            f"{'ok' if result['peak'] <= TARGET_MIB else 'OVER'}",
                            flush=True,
                        )
    print(f"depot from {rows[0][3]['depot_file']}" if rows else "nothing measured")


if __name__ == "__main__":
    main()
