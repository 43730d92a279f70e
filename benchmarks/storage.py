"""Compare depot's memory and local storages with filedepot 0.12's, side by side.

Run from the repository root, with the interpreter that has depot's dependencies::

    python benchmarks/storage.py [--rounds 5] [--files 2000] [--big-mib 1024]
                                 [--reference-python /path/to/venv/bin/python]

Workloads: create, then get+read, N files of 1 KiB in a MemoryFileStorage and a
LocalFileStorage (ours durable, the default, and with ``fsync=False``; filedepot never
fsyncs), and the durable create beside the least plain Python giving its guarantee; store
one big file from an open file and read it back in 64 KiB chunks (MiB/s, peak RSS).
Both projects install ``depot``, so each measurement runs in a fresh child:
ours with the repository on ``PYTHONPATH``, filedepot under ``python -I`` from a temp dir.
Each workload runs for filedepot then depot, round after round; the table shows medians.
The local creates run both children at once, taking turns by blocks of 50 files.
Without ``--reference-python`` filedepot 0.12 goes into a throwaway venv. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024
#: Creates per block when filedepot's and depot's local creates take turns.
PACE = 50

# Runs in a child so filedepot and depot never share a process: takes a JSON spec as its
# argument and prints its figures as JSON, named by the table's keys.
CHILD = r"""
import json, os, platform, resource, sys, time
spec = json.loads(sys.argv[1])
import depot
out = {"depot_file": depot.__file__, "python": platform.python_version()}

def local(path):
    from depot.io.local import LocalFileStorage
    # Only depot has the keyword; None means "the default".
    fsync = spec.get("fsync")
    return LocalFileStorage(path) if fsync is None else LocalFileStorage(path, fsync=fsync)

def rate(amount, start):
    return amount / (time.perf_counter() - start)

def create_all(storage, n):
    data, start = os.urandom(1024), time.perf_counter()
    ids = [storage.create(data, "f.bin", "application/octet-stream") for _ in range(n)]
    return ids, rate(n, start)

def read_all(storage, ids):
    start = time.perf_counter()
    for fid in ids:
        f = storage.get(fid)
        f.read()
        f.close()
    return rate(len(ids), start)

kind = spec["kind"]
if kind == "memory":
    from depot.io.memory import MemoryFileStorage
    storage = MemoryFileStorage()
    ids, out["mem_create"] = create_all(storage, spec["files"])
    out["mem_read"] = read_all(storage, ids)
elif kind == "local-create":
    # Paced by the parent, which runs filedepot's child and ours side by side: a
    # line on stdin asks for a block of creates, the answer is its rate.
    storage, data, ids = local(spec["path"]), os.urandom(1024), []
    print(json.dumps(out), flush=True)
    while line := sys.stdin.readline():
        start = time.perf_counter()
        ids += [storage.create(data, "f.bin", "application/octet-stream") for _ in range(int(line))]
        print(rate(int(line), start), flush=True)
    with open(spec["path"] + ".json", "w") as f:
        json.dump(ids, f)
    sys.exit()
elif kind == "local-read":
    with open(spec["path"] + ".json") as f:
        out["local_read"] = read_all(local(spec["path"]), json.load(f))
elif kind == "raw-durable":
    # The least plain Python giving a durable local create's guarantee: the file and its
    # metadata written in a fresh directory and flushed, the directory flushed, renamed
    # into place, and its parent flushed. depot writes a checksum file besides.
    import uuid
    root, data = spec["path"], os.urandom(1024)
    os.makedirs(root)
    flags, folder = os.O_WRONLY | os.O_CREAT | os.O_EXCL, os.O_RDONLY | os.O_DIRECTORY
    start = time.perf_counter()
    for _ in range(spec["files"]):
        name = str(uuid.uuid4())
        temp = os.path.join(root, ".tmp-" + name)
        os.mkdir(temp)
        dir_fd = os.open(temp, folder)
        meta = {"filename": "f.bin", "content_type": "application/octet-stream",
                "content_length": len(data), "last_modified": time.strftime("%Y-%m-%d %H:%M:%S")}
        for entry, content in (("file", data), ("metadata.json", json.dumps(meta).encode())):
            fd = os.open(entry, flags, 0o644, dir_fd=dir_fd)
            os.write(fd, content)
            os.fsync(fd)
            os.close(fd)
        os.fsync(dir_fd)
        os.close(dir_fd)
        os.rename(temp, os.path.join(root, name))
        fd = os.open(root, folder)
        os.fsync(fd)
        os.close(fd)
    out["raw_durable"] = rate(spec["files"], start)
elif kind == "big":
    storage, mib = local(spec["path"]), os.path.getsize(spec["source"]) / 2**20
    start = time.perf_counter()
    with open(spec["source"], "rb") as src:
        fid = storage.create(src)
    out["big_write"], start = rate(mib, start), time.perf_counter()
    f = storage.get(fid)
    while f.read(spec["chunk"]):
        pass
    f.close()
    out["big_read"] = rate(mib, start)
    # Linux reports ru_maxrss in KiB.
    out["big_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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

    @property
    def ours(self) -> bool:
        return self.tag == "ours"


@dataclass
class Row:
    """A table line: which figure to show and the target depot must meet."""

    label: str
    key: str
    min_ratio: float | None = None  # depot/filedepot must be at least this
    max_mib: float | None = None  # depot's own value must be at most this


ROWS = [
    Row("memory create 1 KiB (ops/s)", "mem_create", min_ratio=1.0),
    Row("memory get+read 1 KiB (ops/s)", "mem_read", min_ratio=1.0),
    Row("local create 1 KiB, durable (ops/s)", "local_create", min_ratio=0.7),
    Row("local create 1 KiB, fsync=False (ops/s)", "local_nosync", min_ratio=1.2),
    Row("local get+read 1 KiB (ops/s)", "local_read", min_ratio=1.0),
    Row("big file write (MiB/s)", "big_write"),
    Row("big file read 64 KiB chunks (MiB/s)", "big_read"),
    Row("big file peak RSS (MiB)", "big_rss", max_mib=32.0),
]


# Figures by implementation tag, then table key: one value per round.
Found = dict[str, dict[str, list[float]]]


def run_child(impl: Impl, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and check it imported the right depot."""
    # Flush earlier writes first so their writeback is not billed to this measurement.
    os.sync()
    argv = [impl.python, *impl.flags, "-c", CHILD, json.dumps(spec)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=impl.env, cwd=impl.cwd)
    if proc.returncode != 0:
        sys.exit(f"{impl.name} child failed on {spec['kind']}:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if Path(result["depot_file"]).resolve().is_relative_to(REPO) != impl.ours:
        sys.exit(f"{impl.name} imported the wrong depot: {result['depot_file']}")
    return result


def start_child(impl: Impl, spec: dict[str, Any]) -> subprocess.Popen[str]:
    """Start a paced child and check, from its first line, that it imported the right depot."""
    argv = [impl.python, *impl.flags, "-c", CHILD, json.dumps(spec)]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=impl.env, cwd=impl.cwd
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first:
        sys.exit(f"{impl.name} child failed on {spec['kind']} (its error is above)")
    if Path(json.loads(first)["depot_file"]).resolve().is_relative_to(REPO) != impl.ours:
        sys.exit(f"{impl.name} imported the wrong depot: {first}")
    return proc


def run_paced(impls: tuple[Impl, Impl], specs: tuple[dict[str, Any], ...]) -> list[float]:
    """Run two create children side by side, a block each in turn; the median rate of each.

    One child each made the figures swing with whatever else the machine did in
    its second (0.67x to 1.06x between runs of the same code): blocks of
    ``PACE`` creates, taken in turn and the first taker alternating, meet the
    same disk and neighbours. Only one child works at any moment, and each block
    starts after ``os.sync()``: a durable create must not pay for flushing the
    other side's unflushed block.
    """
    procs = [start_child(impl, spec) for impl, spec in zip(impls, specs, strict=True)]
    rates: list[list[float]] = [[], []]
    files = specs[0]["files"]
    for block, first in enumerate(range(0, files, PACE)):
        for side in (0, 1) if block % 2 == 0 else (1, 0):
            os.sync()
            stdin, stdout = procs[side].stdin, procs[side].stdout
            assert stdin is not None and stdout is not None
            stdin.write(f"{min(PACE, files - first)}\n")
            stdin.flush()
            answer = stdout.readline()
            if not answer:
                sys.exit(f"{impls[side].name} child failed on local-create (its error is above)")
            rates[side].append(float(answer))
    for impl, proc in zip(impls, procs, strict=True):
        assert proc.stdin is not None
        proc.stdin.close()
        if proc.wait() != 0:
            sys.exit(f"{impl.name} child failed on local-create (its error is above)")
    return [statistics.median(r) for r in rates]


def plan(impl: Impl, work: Path, files: int, source: Path) -> list[dict[str, Any]]:
    """List one round's child specs for one implementation, in the order they run."""
    at = f"{work / impl.tag}-"
    create = {"kind": "local-create", "files": files}
    # filedepot has no fsync keyword (and never fsyncs): its default is run afresh to pair
    # with depot's fsync=False.
    nosync = {"fsync": False} if impl.ours else {}
    return [
        {"kind": "memory", "files": files},
        # Both implementations at once, paced (run_paced).
        {**create, "path": at + "durable", "key": "local_create"},
        {**create, "path": at + "nosync", "key": "local_nosync", **nosync},
        # Reads come from the default store, in a process that did not write it.
        {"kind": "local-read", "path": at + "durable"},
        # The same plain-Python baseline on both sides: its runs are pooled.
        {"kind": "raw-durable", "path": at + "raw", "files": files},
        {"kind": "big", "path": at + "big", "source": str(source), "chunk": CHUNK},
    ]


def one_round(impls: tuple[Impl, Impl], work: Path, files: int, source: Path, found: Found) -> None:
    """Run each workload for filedepot then depot, so both meet the disk in the same state.

    Small-file stores stay in ``work`` until the end: creating files just after deleting
    thousands ran up to 10x slower on our test VM, and noisier.
    """
    plans = [plan(impl, work, files, source) for impl in impls]
    for specs in zip(*plans, strict=True):
        if specs[0]["kind"] == "local-create":
            for impl, value in zip(impls, run_paced(impls, specs), strict=True):
                found[impl.tag].setdefault(specs[0]["key"], []).append(value)
            continue
        for impl, spec in zip(impls, specs, strict=True):
            figures = run_child(impl, spec)
            for key in set(figures) - {"depot_file", "python"}:
                found[impl.tag].setdefault(key, []).append(float(figures[key]))
    # Deleted together once both ran, so neither writer follows the other's deletion:
    # big writes just after a big deletion were erratic on our test VM.
    for impl in impls:
        shutil.rmtree(work / f"{impl.tag}-big")


def make_source(path: Path, mib: int) -> None:
    """Write the incompressible big file once; both implementations store the same bytes."""
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(2**20))


def make_reference(tmp: Path) -> str:
    """Build a throwaway venv holding filedepot 0.12 and return its interpreter."""
    venv = tmp / "ref-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "filedepot==0.12.0"], check=True, cwd=tmp)
    return python


def make_impls(ref_python: str, tmp: Path) -> tuple[Impl, Impl]:
    """Describe how to start filedepot (isolated from the repo) and ours (the repo first)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ref = Impl("filedepot 0.12", "ref", ref_python, ["-I"], env, str(tmp))
    ours_env = {**env, "PYTHONPATH": str(REPO)}
    return ref, Impl("depot", "ours", sys.executable, [], ours_env, str(REPO))


def fmt(value: float) -> str:
    """Format a figure with thousands separators, keeping a decimal for small values."""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def judge(row: Row, ref: float, ours: float) -> tuple[str, str, str]:
    """Return the ratio, target and verdict columns for one row."""
    ratio = f"{ours / ref:.2f}x" if ref else "-"
    if row.max_mib is not None:
        return ratio, f"<= {row.max_mib:g} MiB", "yes" if ours <= row.max_mib else "NO"
    if row.min_ratio is not None:
        ok = bool(ref) and ours / ref >= row.min_ratio
        return ratio, f">= {row.min_ratio:g}x", "yes" if ok else "NO"
    return ratio, "-", ""


def print_table(ref: Impl, ours: Impl, found: Found) -> None:
    """Print the medians side by side as plain text."""
    lines = [["workload", ref.name, ours.name, "ratio", "target", "ok?"]]
    for row in ROWS:
        r = statistics.median(found[ref.tag][row.key])
        o = statistics.median(found[ours.tag][row.key])
        lines.append([row.label, fmt(r), fmt(o), *judge(row, r, o)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        cells = [c.rjust(w) for c, w in zip(line, widths, strict=True)]
        cells[0] = line[0].ljust(widths[0])
        print(" | ".join(cells).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))


def print_raw(found: Found) -> None:
    """Print depot's durable create beside plain Python giving the same guarantee."""
    raw = statistics.median(found["ref"]["raw_durable"] + found["ours"]["raw_durable"])
    ours = statistics.median(found["ours"]["local_create"])
    print("\nagainst plain Python (fsynced data and metadata, new directory renamed, parent")
    print("fsynced), the same rounds:\n")
    label = "local create 1 KiB, durable (ops/s)"
    ratio = ours / raw
    print(f"{'workload':<{len(label)}} | plain Python |   depot | ratio |  target | ok?")
    print(f"{'-' * len(label)}-+--------------+---------+-------+---------+----")
    verdict = "yes" if ratio >= 0.9 else "NO"
    print(f"{label} | {fmt(raw):>12} | {fmt(ours):>7} | {ratio:.2f}x | >= 0.9x | {verdict:>3}")


def print_header(args: argparse.Namespace, versions: dict[str, str]) -> None:
    """Print what the figures depend on: machine, interpreters and sizes."""
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(f"uname -sr: {platform.system()} {platform.release()}")
    print(f"nproc: {len(os.sched_getaffinity(0))}")
    for name, version in versions.items():
        print(f"{name}: Python {version}")
    print(f"{args.files} files of 1 KiB; big file {args.big_mib} MiB, read in 64 KiB chunks")
    print(f"medians of {args.rounds} alternating rounds\n", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--reference-python", help="interpreter with filedepot 0.12 installed")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # tempfile puts this on /tmp's disk (unless TMPDIR says otherwise), for both sides.
    with tempfile.TemporaryDirectory(prefix="depot-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ref, ours = make_impls(args.reference_python or make_reference(tmp), tmp)
        versions = {i.name: run_child(i, {"kind": "about"})["python"] for i in (ref, ours)}
        print_header(args, versions)
        source = tmp / "big.bin"
        make_source(source, args.big_mib)
        found: Found = {ref.tag: {}, ours.tag: {}}
        for n in range(args.rounds):
            work = tmp / f"round-{n}"
            work.mkdir()
            one_round((ref, ours), work, args.files, source, found)
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        print_table(ref, ours, found)
        print_raw(found)


if __name__ == "__main__":
    main()
