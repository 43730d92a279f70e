"""Compare depot's memory and local storages with filedepot 0.12's, side by side.

Run from the repository root with the interpreter that has depot's dependencies::

    python benchmarks/storage.py [--rounds 5] [--files 2000] [--big-mib 1024]
                                 [--reference-python /path/to/venv/bin/python]

Without ``--reference-python`` a throwaway venv with ``filedepot==0.12.0`` is built in a
temporary directory and removed afterwards. Both projects install the package ``depot``, so
every measurement runs in a fresh child process: ours with the repository on ``PYTHONPATH``,
filedepot isolated (``python -I``, cwd in a temp dir) so it can never import the repository.
Rounds alternate filedepot, depot, filedepot, depot...; the table shows medians.

Workloads: create and get+read of N files of 1 KiB in a MemoryFileStorage and in a
LocalFileStorage (ours both durable, the default, and with ``fsync=False``; filedepot never
fsyncs), and storing then reading back in 64 KiB chunks one big file from an open file on
disk, reporting the child's peak RSS and MiB/s. Stdlib only.
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

# Runs in a child so filedepot and depot never share a process. It is handed a JSON spec
# and prints a JSON result on its last line of stdout.
CHILD = r"""
import json, os, platform, resource, sys, time
spec = json.loads(sys.argv[1])
import depot
out = {"depot_file": depot.__file__, "python": platform.python_version()}

def local(path):
    from depot.io.local import LocalFileStorage
    if spec.get("fsync") is None:
        return LocalFileStorage(path)
    return LocalFileStorage(path, fsync=spec["fsync"])

def create_all(storage, n):
    data = os.urandom(1024)
    start = time.perf_counter()
    ids = [storage.create(data, "f.bin", "application/octet-stream") for _ in range(n)]
    return ids, n / (time.perf_counter() - start)

def read_all(storage, ids):
    start = time.perf_counter()
    for fid in ids:
        f = storage.get(fid)
        f.read()
        f.close()
    return len(ids) / (time.perf_counter() - start)

kind = spec["kind"]
if kind == "memory":
    from depot.io.memory import MemoryFileStorage
    storage = MemoryFileStorage()
    ids, out["create"] = create_all(storage, spec["files"])
    out["read"] = read_all(storage, ids)
elif kind == "local-create":
    ids, out["create"] = create_all(local(spec["path"]), spec["files"])
    with open(spec["ids"], "w") as f:
        json.dump(ids, f)
elif kind == "local-read":
    with open(spec["ids"]) as f:
        out["read"] = read_all(local(spec["path"]), json.load(f))
elif kind == "big":
    storage = local(spec["path"])
    start = time.perf_counter()
    with open(spec["source"], "rb") as src:
        fid = storage.create(src)
    out["write"] = spec["size"] / (time.perf_counter() - start) / 2**20
    start = time.perf_counter()
    f = storage.get(fid)
    while f.read(spec["chunk"]):
        pass
    f.close()
    out["read"] = spec["size"] / (time.perf_counter() - start) / 2**20
    # Linux reports ru_maxrss in KiB.
    out["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


@dataclass
class Impl:
    """One side of the comparison: an interpreter and how to start it."""

    name: str
    python: str
    flags: list[str]
    env: dict[str, str]
    cwd: str
    ours: bool


@dataclass
class Row:
    """A table line: which metric to show and the target depot must meet."""

    label: str
    ref_key: str
    ours_key: str
    min_ratio: float | None = None  # depot/filedepot must be at least this
    max_abs: float | None = None  # depot's own value must be at most this (MiB)


ROWS = [
    Row("memory create 1 KiB (ops/s)", "mem_create", "mem_create", min_ratio=1.0),
    Row("memory get+read 1 KiB (ops/s)", "mem_read", "mem_read", min_ratio=1.0),
    Row("local create 1 KiB, durable (ops/s)", "local_create", "local_create", min_ratio=0.7),
    Row("local create 1 KiB, fsync=False (ops/s)", "local_create", "local_nosync", min_ratio=1.0),
    Row("local get+read 1 KiB (ops/s)", "local_read", "local_read", min_ratio=1.0),
    Row("big file write (MiB/s)", "big_write", "big_write"),
    Row("big file read 64 KiB chunks (MiB/s)", "big_read", "big_read"),
    Row("big file peak RSS (MiB)", "big_rss", "big_rss", max_abs=32.0),
]


def run_child(impl: Impl, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and check it imported the right depot."""
    # Flush earlier writes first so their writeback is not billed to this measurement.
    os.sync()
    proc = subprocess.run(
        [impl.python, *impl.flags, "-c", CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=impl.env,
        cwd=impl.cwd,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"{impl.name} child failed on {spec['kind']}:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    in_repo = Path(result["depot_file"]).resolve().is_relative_to(REPO)
    if in_repo != impl.ours:
        sys.exit(f"{impl.name} imported the wrong depot: {result['depot_file']}")
    return result


def one_round(impl: Impl, work: Path, args: argparse.Namespace, source: Path) -> dict[str, float]:
    """Measure every workload once for one implementation, with its stores under ``work``."""
    mem = run_child(impl, {"kind": "memory", "files": args.files})
    out = {"mem_create": mem["create"], "mem_read": mem["read"]}
    # filedepot has no fsync keyword (and never fsyncs): it runs only the default mode.
    modes = {"local_create": None, "local_nosync": False} if impl.ours else {"local_create": None}
    for key, fsync in modes.items():
        spec = {
            "kind": "local-create",
            "files": args.files,
            "fsync": fsync,
            "path": str(work / key),
            "ids": str(work / f"{key}.json"),
        }
        out[key] = run_child(impl, spec)["create"]
    # Reads come from the default store, in a process that did not write it.
    spec = {
        "kind": "local-read",
        "path": str(work / "local_create"),
        "ids": str(work / "local_create.json"),
    }
    out["local_read"] = run_child(impl, spec)["read"]
    big = run_child(
        impl,
        {
            "kind": "big",
            "path": str(work / "big"),
            "source": str(source),
            "size": source.stat().st_size,
            "chunk": CHUNK,
        },
    )
    out.update(big_write=big["write"], big_read=big["read"], big_rss=big["rss"])
    return {key: float(value) for key, value in out.items()}


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
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "filedepot==0.12.0"],
        check=True,
        cwd=tmp,
    )
    return python


def make_impls(ref_python: str, tmp: Path) -> tuple[Impl, Impl]:
    """Describe how to start filedepot (isolated from the repo) and ours (the repo first)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ref = Impl("filedepot 0.12", ref_python, ["-I"], env, str(tmp), ours=False)
    ours = Impl("depot", sys.executable, [], {**env, "PYTHONPATH": str(REPO)}, str(REPO), ours=True)
    return ref, ours


def fmt(value: float) -> str:
    """Format a figure with thousands separators, keeping a decimal for small values."""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def judge(row: Row, ref: float, ours: float) -> tuple[str, str, str]:
    """Return the ratio, target and verdict columns for one row."""
    ratio = f"{ours / ref:.2f}x" if ref else "-"
    if row.max_abs is not None:
        return ratio, f"<= {row.max_abs:g} MiB", "yes" if ours <= row.max_abs else "NO"
    if row.min_ratio is not None:
        ok = bool(ref) and ours / ref >= row.min_ratio
        return ratio, f">= {row.min_ratio:g}x", "yes" if ok else "NO"
    return ratio, "-", ""


def print_table(rounds: dict[str, list[dict[str, float]]], ref: Impl, ours: Impl) -> None:
    """Print medians side by side as plain text."""
    lines = [["workload", ref.name, ours.name, "ratio", "target", "ok?"]]
    for row in ROWS:
        r = statistics.median(d[row.ref_key] for d in rounds[ref.name])
        o = statistics.median(d[row.ours_key] for d in rounds[ours.name])
        lines.append([row.label, fmt(r), fmt(o), *judge(row, r, o)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        print(" | ".join(cells).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))


def print_header(args: argparse.Namespace, versions: dict[str, str]) -> None:
    """Print what the figures depend on: machine, interpreters and sizes."""
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(f"uname -sr: {platform.system()} {platform.release()}")
    print(f"nproc: {len(os.sched_getaffinity(0))}")
    for name, version in versions.items():
        print(f"{name}: Python {version}")
    print(
        f"{args.files} files of 1 KiB; big file {args.big_mib} MiB read in "
        f"{CHUNK // 1024} KiB chunks"
    )
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
        ref_python = args.reference_python or make_reference(tmp)
        ref, ours = make_impls(ref_python, tmp)
        versions = {i.name: run_child(i, {"kind": "about"})["python"] for i in (ref, ours)}
        print_header(args, versions)
        source = tmp / "big.bin"
        make_source(source, args.big_mib)
        rounds: dict[str, list[dict[str, float]]] = {ref.name: [], ours.name: []}
        for n in range(args.rounds):
            for impl in (ref, ours):
                work = tmp / f"{impl.name.split()[0]}-{n}"
                work.mkdir()
                rounds[impl.name].append(one_round(impl, work, args, source))
                shutil.rmtree(work)
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        print_table(rounds, ref, ours)


if __name__ == "__main__":
    main()
