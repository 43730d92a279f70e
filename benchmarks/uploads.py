"""A tus upload against a plain multipart POST to the same app, on a local or an S3 depot.

Run from the repository root with the project's interpreter::

    python benchmarks/uploads.py [--rounds 3] [--mib 256] [--backend local|s3]

``--backend s3`` starts moto's S3 server on 127.0.0.1 (the tests' server) and
stores there. gunicorn (one sync worker) serves benchmarks/uploads_app.py; the client sends
the same file as one multipart POST (streamed from disk by http.client) and as
a tus upload (tuspy, 8 MiB chunks), alternating, and reads the worker's peak
RSS (psutil, sampled every 10 ms). Figures are MB/s of the whole upload,
stored file included; the table shows medians and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
from tusclient import client as tus

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.backends.s3 import MotoServer  # noqa: E402
from tests.servers import free_port, wait_for_port  # noqa: E402


class Peak(threading.Thread):
    """Samples a process tree's largest RSS."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            for child in self.process.children():
                with contextlib.suppress(psutil.NoSuchProcess):  # a worker restarting
                    self.peak = max(self.peak, child.memory_info().rss)
            time.sleep(0.01)

    def stop(self) -> float:
        self.running = False
        self.join()
        return self.peak / 2**20


def plain(port: int, path: Path) -> None:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + path.stat().st_size + len(tail)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.putrequest("POST", "/plain")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    conn.send(head)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            conn.send(block)
    conn.send(tail)
    answer = conn.getresponse()
    assert answer.status == 201, answer.read()[:300]
    conn.close()


def tus_upload(port: int, path: Path) -> None:
    with open(path, "rb") as stream:
        uploader = tus.TusClient(f"http://127.0.0.1:{port}/files").uploader(
            file_stream=stream, chunk_size=8 << 20, metadata={"filename": path.name}
        )
        uploader.upload()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="depot-uploads-")))
        source = tmp / "upload.bin"
        with open(source, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        port = free_port()
        env = {**os.environ, "BENCH_STORAGE": str(tmp / "store"), "PYTHONPATH": str(REPO)}
        if args.backend == "s3":
            moto = stack.enter_context(MotoServer(tmp))
            env["BENCH_S3_ENDPOINT"] = moto.url
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                   "--workers", "1", "--timeout", "300", "--log-level", "warning",
                   "--chdir", str(REPO / "benchmarks"), "uploads_app:application"]  # fmt: skip
        server = subprocess.Popen(command, env=env)
        try:
            wait_for_port(port, server, "gunicorn")
            rates: dict[str, list[float]] = {"plain": [], "tus": []}
            peaks: dict[str, list[float]] = {"plain": [], "tus": []}
            for n in range(args.rounds):
                order = [("plain", plain), ("tus", tus_upload)]
                for name, upload in order if n % 2 == 0 else order[::-1]:
                    os.sync()
                    peak = Peak(server.pid)
                    peak.start()
                    start = time.perf_counter()
                    upload(port, source)
                    rates[name].append(args.mib * 2**20 / 1e6 / (time.perf_counter() - start))
                    peaks[name].append(peak.stop())
                print(f"round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            server.terminate()
            server.wait(30)
    print(f"uname -sr: {os.uname().sysname} {os.uname().release}, nproc {os.cpu_count()}")
    where = "local depot (fsync on)" if args.backend == "local" else "S3 depot (moto server)"
    print(f"{args.mib} MiB file, gunicorn 1 sync worker, {where}, "
          f"medians of {args.rounds} alternating rounds\n")  # fmt: skip
    plain_rate, tus_rate = statistics.median(rates["plain"]), statistics.median(rates["tus"])
    print("upload                      |    MB/s | worker peak RSS (MiB)")
    print("----------------------------+---------+----------------------")
    print(f"plain multipart POST        | {plain_rate:7.1f} | {max(peaks['plain']):6.1f}")
    print(f"tus, 8 MiB chunks (tuspy)   | {tus_rate:7.1f} | {max(peaks['tus']):6.1f}")
    ok = "yes" if tus_rate >= 0.8 * plain_rate else "NO"
    print(f"\ntus / plain: {tus_rate / plain_rate:.2f}x (target >= 0.8x): {ok}")
    ok = "yes" if max(peaks["tus"]) <= 64 else "NO"
    print(f"tus worker peak RSS: {max(peaks['tus']):.1f} MiB (target <= 64 MiB): {ok}")


if __name__ == "__main__":
    main()
