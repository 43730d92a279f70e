"""The ``depot`` console script: help, ls, info, put, get, rm, JSON output and exit statuses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from depot.manager import DepotManager
from tests.cli.conftest import Run

COMMANDS = ["ls", "info", "put", "get", "rm", "copy", "migrate", "gc", "verify", "serve"]


def test_help_lists_every_command_and_the_exit_statuses(depot: Run) -> None:
    done = depot("--help")
    assert done.returncode == 0, done.stderr
    listed = re.findall(r"^  (\w+)  ", done.stdout, re.M)
    assert sorted(listed) == sorted(COMMANDS)
    assert "Exit statuses: 0 done" in done.stdout
    assert depot("--version").stdout.startswith("depot, version ")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(depot: Run, command: str) -> None:
    done = depot(command, "--help")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  Examples?:\n    depot ", done.stdout, re.M), done.stdout


def test_python_dash_m_depot_is_the_same_command(depot: Run) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "depot", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "Commands:" in done.stdout


def test_put_ls_info_get_rm_round_trip(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "media"), other=str(tmp_path / "other"))
    (depot.cwd / "report.pdf").write_bytes(b"%PDF-1.4 not really")
    (depot.cwd / "notes.txt").write_text("hello\n")

    put = depot("put", "--depot", "media", "report.pdf", "notes.txt")
    assert put.returncode == 0, put.stderr
    paths = put.stdout.split()
    assert len(paths) == 2 and all(p.startswith("media/") for p in paths)

    listed = depot("ls", "media")
    assert sorted(listed.stdout.split()) == sorted(p.split("/")[1] for p in paths)
    long = depot("ls", "media", "-l", "--json")
    assert {f["filename"] for f in json.loads(long.stdout)} == {"report.pdf", "notes.txt"}
    table = depot("ls", "media", "-l").stdout.splitlines()
    assert table[0].split() == ["id", "size", "modified", "type", "name"]
    assert all(line == line.rstrip() for line in table)  # no padding after the last column

    info = json.loads(depot("info", paths[1], "--json").stdout)
    assert info["filename"] == "notes.txt" and info["content_type"] == "text/plain"
    assert info["content_length"] == 6 and info["checksum"].startswith("sha256:")
    assert info["path"] == paths[1]

    got = depot.raw("get", paths[0])
    assert got.returncode == 0 and got.stdout == b"%PDF-1.4 not really"
    assert depot("get", paths[1], "-o", "copy.txt").returncode == 0
    assert (depot.cwd / "copy.txt").read_text() == "hello\n"

    removed = depot("rm", *paths, "--json")
    assert removed.returncode == 0
    assert [r["outcome"] for r in json.loads(removed.stdout)] == ["deleted", "deleted"]
    assert depot("ls", "media").stdout == ""


def test_put_reads_standard_input_and_the_default_depot(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "media"))
    put = depot("put", "-", "--name", "dump.sql", "--json", input=b"select 1;")
    assert put.returncode == 0, put.stderr
    (stored,) = json.loads(put.stdout)
    info = json.loads(depot("info", stored["path"], "--json").stdout)
    assert (info["filename"], info["content_length"]) == ("dump.sql", 9)


def test_ls_without_a_depot_lists_the_depots_with_the_default(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "m"), cache=str(tmp_path / "c"))
    rows = json.loads(depot("ls", "--json").stdout)
    assert rows == [
        {"name": "media", "backend": "depot.io.local.LocalFileStorage", "default": True},
        {"name": "cache", "backend": "depot.io.local.LocalFileStorage", "default": False},
    ]


def test_toml_config_from_the_environment_variable_and_depots_from_variables(
    depot: Run, tmp_path: Path
) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text(
        f'[depot.media]\ndepot.backend = "local"\ndepot.storage_path = "{tmp_path}/m"\n'
    )
    depot.env = {"DEPOT_CONFIG": str(config), "DEPOT_SCRATCH__BACKEND": "memory"}
    names = [row["name"] for row in json.loads(depot("ls", "--json").stdout)]
    assert names == ["media", "scratch"]


def test_app_module_configures_depots(depot: Run, tmp_path: Path) -> None:
    (depot.cwd / "myapp.py").write_text(
        "from depot.manager import DepotManager\n"
        "def setup():\n"
        f"    DepotManager.configure('files', {{'depot.storage_path': {str(tmp_path / 'f')!r}}})\n"
    )
    done = depot("--app", "myapp:setup", "ls", "--json")
    assert done.returncode == 0, done.stderr
    assert [row["name"] for row in json.loads(done.stdout)] == ["files"]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["ls", "--nope"], 2, "No such option '--nope'"),
        (["get", "media"], 2, "is not a file path"),
        (["put", "-d", "media", "missing.bin"], 2, "cannot read 'missing.bin'"),
        (["put", "-d", "media", "--name", "x", "a", "b"], 2, "--name names one file"),
        (["gc", "media"], 2, "every file would look like garbage"),
        (["verify"], 2, "give DEPOT, or --models"),
        (["gc", "media", "--models", "tests.ops.models"], 2, "--models needs --db URL"),
        (["gc", "media", "--grace", "soon", "--db", "sqlite://"], 2, "'soon': give a number"),
        (["ls", "nope"], 3, "no depot named 'nope'; the depots are media"),
        (["--app", "no_such_module", "ls"], 3, "no module 'no_such_module' here"),
        (["--app", "os:nothing_here", "ls"], 3, "module 'os' has no 'nothing_here'"),
        (["--config", "missing.ini", "ls"], 3, "'missing.ini' does not exist"),
        (
            ["get", "media/0f8fad5b-d9cb-469f-a165-70867728950e", "-o", "x"],
            4,
            "0f8fad5b-d9cb-469f-a165-70867728950e",
        ),
        (["rm", "media/0f8fad5b-d9cb-469f-a165-70867728950e"], 4, "no such file"),
        (["info", "media/../../etc/passwd"], 2, "Invalid file id"),
        (["info", "media/\x1b[31mred"], 2, "Invalid file id"),
    ],
)
def test_mistakes_get_a_message_and_their_exit_status_never_a_traceback(
    depot: Run,
    local_ini: Callable[..., Path],
    tmp_path: Path,
    args: list[str],
    status: int,
    message: str,
) -> None:
    local_ini(media=str(tmp_path / "media"))
    done = depot(*args)
    assert done.returncode == status, (done.stdout, done.stderr)
    assert message in done.stderr.replace("\n", " ")
    assert "Traceback" not in done.stderr
    assert "\x1b[31m" not in done.stderr  # a control sequence in an id is not echoed raw


def test_no_configured_depot_says_how_to_configure_one(depot: Run) -> None:
    done = depot("ls")
    assert done.returncode == 3
    assert "no depot is configured: give --config FILE" in done.stderr


def test_rm_missing_ok_and_the_file_of_an_unreachable_backend(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "media"))
    gone = "media/0f8fad5b-d9cb-469f-a165-70867728950e"
    assert depot("rm", "--missing-ok", gone).returncode == 0
    # An S3 endpoint nothing listens on: configure() cannot reach it.
    depot.env = {
        "DEPOT_FAR__BACKEND": "s3",
        "DEPOT_FAR__ENDPOINT_URL": "http://127.0.0.1:9",
        "DEPOT_FAR__ACCESS_KEY_ID": "k",
        "DEPOT_FAR__SECRET_ACCESS_KEY": "s",
        "DEPOT_FAR__MAX_ATTEMPTS": "1",
        "DEPOT_FAR__CONNECT_TIMEOUT": "1",
    }
    done = depot("ls", "far")
    assert done.returncode == 5, done.stderr
    assert "127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr


def test_get_to_a_terminal_is_refused_and_a_failed_write_leaves_no_file(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    local_ini(media=str(tmp_path / "media"))
    path = depot("put", "-d", "media", "-", "--name", "a.bin", input=b"abc").stdout.strip()
    done = depot("get", path, "-o", "no/such/dir/a.bin")
    assert done.returncode == 1 and "No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(depot.cwd.iterdir()) == [depot.cwd / "depot.ini"]


def test_traceback_flag_shows_where_an_error_came_from(depot: Run) -> None:
    (depot.cwd / "broken.py").write_text("def setup():\n    raise RuntimeError('app failed')\n")
    plain = depot("--app", "broken:setup", "ls")
    assert plain.returncode == 1
    assert "RuntimeError: app failed (run with --traceback to see where)" in plain.stderr
    assert "Traceback" not in plain.stderr
    shown = depot("--traceback", "--app", "broken:setup", "ls")
    assert "Traceback" in shown.stderr and "broken.py" in shown.stderr


def test_control_characters_of_a_stored_name_never_reach_the_terminal_raw(
    depot: Run, local_ini: Callable[..., Path], tmp_path: Path
) -> None:
    """A name with ESC (or the C1 CSI) could recolour or clear the terminal of whoever lists it."""
    local_ini(media=str(tmp_path / "media"))
    media = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    name = "a\x1b[2J\x9b31m\x07.txt"
    path = f"media/{media.create(b'x', name, 'text/plain')}"
    for args in (["ls", "media", "-l"], ["info", path]):
        shown = depot.raw(*args).stdout.decode()
        assert "a\\x1b[2J\\x9b31m\\x07.txt" in shown
        assert not any(c in shown for c in "\x1b\x9b\x07")
    for args in (["ls", "media", "-l", "--json"], ["info", path, "--json"]):
        raw = depot.raw(*args).stdout.decode()
        assert not any(c in raw for c in "\x1b\x9b\x07")
        assert name in raw.replace("\\u001b", "\x1b").replace("\\u009b", "\x9b").replace(
            "\\u0007", "\x07"
        )
