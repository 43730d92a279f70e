"""Real sizes through the ``depot`` command: local -> S3 (moto) -> local, each copy
killed with SIGKILL half-way, then run again, then verified.

    python benchmarks/ops_resume.py [--files 10000] [--size 1024] [--big-mib 1024]

Each leg starts ``depot copy`` (the console script beside this Python), kills it
once about half of the files are in the target, runs it again until it reports
nothing failed (a write killed in its first instant is refused for 2 s on local
storage, then copied), runs ``depot verify`` on the target, and compares every
file's size and checksum with the source's. It prints each step's time and
outcome; it asserts nothing is lost, it is not a timed test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SCRIPT = Path(sys.executable).with_name("depot")


def depot(config: Path, *args: str) -> tuple[int, dict]:
    done = subprocess.run(
        [str(SCRIPT), "--config", str(config), *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}


def count(config: Path, name: str) -> int:
    done = subprocess.run(
        [str(SCRIPT), "--config", str(config), "ls", name],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(done.stdout.split())


def leg(config: Path, source: str, target: str, total: int, jobs: int) -> None:
    began = time.monotonic()
    proc = subprocess.Popen(
        [str(SCRIPT), "--config", str(config), "copy", source, target, "-j", str(jobs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill once about half the files are there (listing costs time: look each second).
    while proc.poll() is None and count(config, target) < total // 2:
        time.sleep(1)
    killed_at = count(config, target)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    print(
        f"  {source} -> {target}: killed after {time.monotonic() - began:6.1f} s, "
        f"{killed_at} of {total} files in the target (exit {proc.returncode})"
    )
    runs = 0
    while True:
        runs += 1
        started = time.monotonic()
        status, report = depot(config, "copy", source, target, "-j", str(jobs))
        print(
            f"  run {runs} again: {time.monotonic() - started:6.1f} s, copied "
            f"{report['copied']}, skipped {report['skipped']}, failed {len(report['failed'])} "
            f"(exit {status})"
        )
        if report["ok"]:
            break
        assert all("is being written by another process" in f["reason"] for f in report["failed"])
        time.sleep(2.1)
    started = time.monotonic()
    status, checked = depot(config, "verify", target)
    print(
        f"  verify {target}: {time.monotonic() - started:6.1f} s, ok {checked['ok']}, "
        f"missing {len(checked['missing'])}, corrupt {len(checked['corrupt'])} (exit {status})"
    )
    assert status == 0 and checked["ok"] == total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args()
    from benchmarks.ops import fill, store_big
    from depot.io.local import LocalFileStorage
    from tests.backends.s3 import MotoServer

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="depot-resume-")))
        moto = stack.enter_context(MotoServer(tmp))
        source = LocalFileStorage(tmp / "source", fsync=False)
        fill(source, args.files, args.size)
        big = store_big(source, tmp, args.big_mib)
        config = tmp / "depot.ini"
        config.write_text(
            f"[depot:source]\ndepot.storage_path = {tmp / 'source'}\n\n"
            f"[depot:s3]\ndepot.backend = s3\ndepot.bucket = resume\n"
            f"depot.endpoint_url = {moto.url}\ndepot.access_key_id = k\n"
            f"depot.secret_access_key = s\ndepot.region_name = us-east-1\n\n"
            f"[depot:back]\ndepot.storage_path = {tmp / 'back'}\ndepot.fsync = false\n"
        )
        total = args.files + 1
        print(
            f"{args.files:,} files of {args.size} B and one of {args.big_mib} MiB, "
            f"{args.jobs} jobs, moto at {moto.url}"
        )
        leg(config, "source", "s3", total, args.jobs)
        leg(config, "s3", "back", total, args.jobs)
        back = LocalFileStorage(tmp / "back")
        mismatched = [
            file_id
            for file_id in source.list()
            if (source.get(file_id).content_length, source.get(file_id).checksum)
            != (back.get(file_id).content_length, back.get(file_id).checksum)
        ]
        print(
            f"  round trip: {len(back.list())} files back, {len(mismatched)} differ in size "
            f"or checksum; the {args.big_mib} MiB file: "
            f"{back.get(big).checksum == source.get(big).checksum}"
        )
        assert not mismatched and sorted(back.list()) == sorted(source.list())


if __name__ == "__main__":
    main()
