"""``depot copy``, ``migrate``, ``gc`` and ``verify`` as the console script; progress bars."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from depot.io.utils import FileIntent
from depot.manager import DepotManager
from tests.cli.conftest import REPO, SCRIPT, Run
from tests.ops.conftest import OLD, png
from tests.ops.models import Folder, OpsBase, Photo


@pytest.fixture
def app_db(tmp_path: Path) -> tuple[str, sa.Engine]:
    """A SQLite file with the operations tests' tables: its URL and engine."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = sa.create_engine(url)
    OpsBase.metadata.create_all(engine)
    yield url, engine
    engine.dispose()


def _rows_and_leftovers(media_dir: Path, engine: sa.Engine) -> tuple[set[str], set[str]]:
    """Rows referring to three files of 'media' (a photo, its thumbnail, a file), and
    two files no row refers to; all stored long ago. Returns (referenced, leftovers)."""
    media = DepotManager.configure("media", {"depot.storage_path": str(media_dir)})
    with mock.patch("depot.io.utils.timestamp", return_value=OLD):
        with orm.Session(engine) as session:
            session.add(Photo(id=1, image=png()))
            session.add(
                Folder(owner="x", number=1, files=[FileIntent(b"a", "a.txt", "text/plain")])
            )
            session.commit()
        leftovers = {media.create(b"left %d" % n, "left.txt") for n in range(2)}
    return set(media.list()) - leftovers, leftovers


def test_copy_copies_then_skips_and_reports_json(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "media"), backup=str(tmp_path / "backup"))
    source = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    ids = {source.create(b"file %d" % n, f"f{n}.txt") for n in range(5)}

    first = depot("copy", "media", "backup", "--jobs", "2", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["copied"], report["skipped"], report["failed"]) == (5, 0, [])
    assert report["ok"] is True and report["bytes_copied"] == 30
    assert set(os.listdir(tmp_path / "backup")) >= ids

    again = depot("copy", "media", "backup")
    assert again.returncode == 0
    assert again.stdout.strip() == "copied 0 (0 bytes), skipped 5, failed 0"


def test_copy_lists_each_failure_with_its_reason_and_exits_1(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "media"), backup=str(tmp_path / "backup"))
    (depot.cwd / "ids.txt").write_text("0f8fad5b-d9cb-469f-a165-70867728950e\n\n")
    done = depot("copy", "media", "backup", "--ids", "ids.txt")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "copied 0 (0 bytes), skipped 0, failed 1",
        "failed  0f8fad5b-d9cb-469f-a165-70867728950e: not in the source depot; nothing to copy",
    ]


def test_copy_to_s3_through_the_command(
    depot: Run, tmp_path: Path, s3_settings: dict[str, Any]
) -> None:
    source = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    ids = {source.create(b"x" * n, "x.bin") for n in (0, 1, 70_000)}
    lines = ["[depot:media]", f"depot.storage_path = {tmp_path / 'media'}", "", "[depot:s3]"]
    lines += [f"{key} = {value}" for key, value in s3_settings.items()]
    (depot.cwd / "depot.ini").write_text("\n".join(lines) + "\n")
    done = depot("copy", "media", "s3", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["copied"] == 3
    assert set(depot("ls", "s3").stdout.split()) == ids
    assert json.loads(depot("verify", "s3", "--json").stdout)["ok"] == 3


def test_gc_lists_then_deletes_only_the_old_unreferenced_files(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path, app_db: tuple[str, sa.Engine]
) -> None:
    url, engine = app_db
    local_ini(media=str(tmp_path / "media"))
    referenced, leftovers = _rows_and_leftovers(tmp_path / "media", engine)
    recent = DepotManager.get("media").create(b"an upload in flight")

    listed = depot("gc", "media", "--db", url, "-m", "tests.ops.models", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert {g["file_id"] for g in report["garbage"]} == leftovers
    assert {g["outcome"] for g in report["garbage"]} == {"unreferenced"}
    assert (report["files"], report["rows"], report["references"], report["recent"]) == (6, 2, 3, 1)
    assert len(os.listdir(tmp_path / "media")) == 6  # listing deletes nothing

    deleted = depot("gc", "media", "--db", url, "-m", "tests.ops.models", "--delete")
    assert deleted.returncode == 0, deleted.stderr
    assert sorted(line.split()[0] for line in deleted.stdout.splitlines()[:-1]) == [
        "deleted",
        "deleted",
    ]
    assert "6 files, 2 rows, 3 references: 2 garbage, 1 unreferenced but recent" in deleted.stdout
    assert set(DepotManager.get("media").list()) == referenced | {recent}


def test_gc_refuses_to_delete_while_a_value_is_unreadable(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path, app_db: tuple[str, sa.Engine]
) -> None:
    url, engine = app_db
    local_ini(media=str(tmp_path / "media"))
    _, leftovers = _rows_and_leftovers(tmp_path / "media", engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO depot_ops_photos (id, image) VALUES (2, '{not json')"))
    done = depot(
        "gc",
        "media",
        "--db",
        url,
        "-m",
        "tests.ops.models:Photo",
        "-m",
        "tests.ops.models:Folder",
        "--delete",
    )
    assert done.returncode == 1
    assert "unreadable depot_ops_photos(id=2).image" in done.stderr
    assert leftovers <= set(DepotManager.get("media").list())  # nothing deleted


def test_verify_exit_status_says_missing_and_corrupt(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path, app_db: tuple[str, sa.Engine]
) -> None:
    url, engine = app_db
    local_ini(media=str(tmp_path / "media"))
    referenced, _ = _rows_and_leftovers(tmp_path / "media", engine)
    clean = depot("verify", "--db", url, "-m", "tests.ops.models", "--json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["ok"] == 3

    missing, corrupt, _ = sorted(referenced)
    DepotManager.get("media").delete(missing)
    assert depot("verify", "--db", url, "-m", "tests.ops.models").returncode == 8
    (tmp_path / "media" / corrupt / "file").write_bytes(b"changed on disk")
    both = depot("verify", "--db", url, "-m", "tests.ops.models", "--json")
    assert both.returncode == 8 + 16
    report = json.loads(both.stdout)
    assert [m["file_id"] for m in report["missing"]] == [f"media/{missing}"]
    assert [c["file_id"] for c in report["corrupt"]] == [f"media/{corrupt}"]
    assert depot("verify", "media").returncode == 16  # the depot alone: no missing file


def test_migrate_copies_the_referenced_files_and_rewrites_the_rows(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path, app_db: tuple[str, sa.Engine]
) -> None:
    url, engine = app_db
    local_ini(media=str(tmp_path / "media"), archive=str(tmp_path / "archive"))
    referenced, leftovers = _rows_and_leftovers(tmp_path / "media", engine)
    done = depot("migrate", "archive", "--db", url, "-m", "tests.ops.models", "--rewrite", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["copy"]["copied"] == 3 and report["rewritten"] == 2 and report["ok"]
    assert set(os.listdir(tmp_path / "archive")) == referenced  # the leftovers stay behind
    with engine.connect() as conn:
        image = json.loads(conn.execute(sa.text("SELECT image FROM depot_ops_photos")).scalar())
    assert image["depot_name"] == "archive"


def test_a_progress_bar_is_drawn_under_a_terminal_and_not_in_a_pipe(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "media"), backup=str(tmp_path / "backup"))
    source = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    for n in range(20):
        source.create(b"y" * 1000, f"{n}.bin")

    piped = depot("copy", "media", "backup")
    assert piped.stderr == ""  # not a terminal: no bars, no escape codes

    main, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    env.update(TERM="xterm-256color", COLUMNS="120", PYTHONPATH=str(REPO))
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [str(SCRIPT), "copy", "media", "backup", "--compare", "content"],
        cwd=depot.cwd,
        env=env,
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    drawn = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            drawn += chunk
        elif proc.poll() is not None:
            break
    out = proc.communicate(timeout=30)[0].decode()
    os.close(main)
    assert proc.returncode == 0
    text = drawn.decode("utf-8", "replace")
    assert "Copying" in text and "20/20 files" in text and "━" in text
    assert "\x1b[" in text  # drawn with the terminal's control sequences
    assert out.strip() == "copied 0 (0 bytes), skipped 20, failed 0"  # results stay plain
    quiet = depot("-q", "copy", "media", "backup")
    assert quiet.stderr == ""


def _copy_under_way(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path, copied: int
) -> tuple[set[str], subprocess.Popen[str]]:
    """400 files of 64 KiB in 'media', and a ``depot copy media backup -j 2`` running,
    returned once ``copied`` entries are in the target's directory."""
    local_ini(media=str(tmp_path / "media"), backup=str(tmp_path / "backup"))
    source = DepotManager.configure(
        "media", {"depot.storage_path": str(tmp_path / "media"), "depot.fsync": "false"}
    )
    ids = {source.create(os.urandom(64 * 1024), f"{n}.bin") for n in range(400)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    proc = subprocess.Popen(
        [str(SCRIPT), "copy", "media", "backup", "-j", "2"],
        cwd=depot.cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = tmp_path / "backup"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if target.exists() and len(os.listdir(target)) >= copied:
            break
        time.sleep(0.01)
    return ids, proc


def test_a_copy_killed_half_way_is_finished_by_running_it_again(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    ids, proc = _copy_under_way(depot, local_ini, tmp_path, 100)
    proc.kill()
    proc.communicate(timeout=30)  # and its pipes closed
    assert proc.returncode == -9, "the copy ended before it could be killed half-way"

    resumed = json.loads(depot("copy", "media", "backup", "--json").stdout)
    failed = resumed["failed"]
    # In-flight writes are directories too: some of the 100 seen were not finished.
    assert resumed["skipped"] >= 90
    assert resumed["copied"] + resumed["skipped"] + len(failed) == 400
    # A write killed between its mkdir and its lock looks, for 2 s, like one that
    # is running: such a file fails with that reason, and the next run copies it.
    assert all("is being written by another process" in f["reason"] for f in failed)
    if failed:
        time.sleep(2.1)
        again = json.loads(depot("copy", "media", "backup", "--json").stdout)
        assert again["ok"] and again["copied"] == len(failed)
    backup = DepotManager.configure("backup", {"depot.storage_path": str(tmp_path / "backup")})
    assert set(backup.list()) == ids
    checked = depot("verify", "backup", "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"] == 400


def test_ctrl_c_stops_a_copy_with_status_130_and_the_next_run_finishes_it(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    ids, proc = _copy_under_way(depot, local_ini, tmp_path, 20)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert err.strip() == "error: interrupted" and out == ""
    finished = json.loads(depot("copy", "media", "backup", "--json").stdout)
    assert finished["ok"] and finished["copied"] + finished["skipped"] == 400
    backup = DepotManager.configure("backup", {"depot.storage_path": str(tmp_path / "backup")})
    assert set(backup.list()) == ids


def test_gc_keeps_and_names_a_file_referenced_under_a_depot_name_not_configured(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path, app_db: tuple[str, sa.Engine]
) -> None:
    """The app aliases 'gallery' to 'media'; the config the command reads lacks the alias."""
    url, engine = app_db
    local_ini(media=str(tmp_path / "media"))
    media = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    with mock.patch("depot.io.utils.timestamp", return_value=OLD):
        kept = media.create(b"a cover", "cover.txt")
    value = {"depot_name": "gallery", "file_id": kept, "path": f"gallery/{kept}",
             "files": [f"gallery/{kept}"], "filename": "cover.txt"}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO depot_ops_folders (owner, number, cover) VALUES ('x', 1, :v)"),
            {"v": json.dumps(value)},
        )
    done = depot("gc", "media", "--db", url, "-m", "tests.ops.models", "--delete", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["garbage"] == []
    assert [u["path"] for u in report["unconfigured"]] == [f"gallery/{kept}"]
    assert "names a depot not configured here" in done.stderr
    assert media.exists(kept)


def test_copy_leaves_a_newer_target_file_unless_told_to_overwrite_it(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "media"), backup=str(tmp_path / "backup"))
    source = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    with mock.patch("depot.io.utils.timestamp", return_value=OLD):
        file_id = source.create(b"old bytes", "a.txt")
    assert depot("copy", "media", "backup").returncode == 0
    backup = DepotManager.configure("backup", {"depot.storage_path": str(tmp_path / "backup")})
    backup.replace(file_id, b"newer bytes, written by the app")
    kept = depot("copy", "media", "backup")
    assert kept.returncode == 1 and "and newer there" in kept.stdout
    assert backup.get(file_id).read() == b"newer bytes, written by the app"
    forced = depot("copy", "media", "backup", "--overwrite-newer", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout)["copied"] == 1
    assert backup.get(file_id).read() == b"old bytes"


def test_gc_against_a_database_with_no_reference_deletes_nothing_unless_allowed(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path, app_db: tuple[str, sa.Engine]
) -> None:
    url, _ = app_db  # the right tables, no rows: as a wrong --db would look
    local_ini(media=str(tmp_path / "media"))
    media = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    with mock.patch("depot.io.utils.timestamp", return_value=OLD):
        kept = media.create(b"referenced by the real database")
    done = depot("gc", "media", "--db", url, "-m", "tests.ops.models", "--delete")
    assert done.returncode == 1 and "no reference to 'media' was read" in done.stderr
    assert media.exists(kept)
    forced = depot(
        "gc", "media", "--db", url, "-m", "tests.ops.models", "--delete", "--allow-no-references"
    )
    assert forced.returncode == 0 and not media.exists(kept)
