"""The command against odd input: names that would rewrite the terminal, applications that
print or exit, paths that would overwrite what they should not. In-process, through main()."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from depot.cli import main
from depot.cli.output import Output, shown
from depot.manager import DepotManager

ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run(*argv)`` runs the command in ``tmp_path`` (a depot.ini of the local depot
    ``media``): its status, standard output and standard error."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for variable in [v for v in os.environ if v.startswith("DEPOT_")]:
        monkeypatch.delenv(variable)
    (tmp_path / "depot.ini").write_text(
        f"[depot:media]\ndepot.backend = local\ndepot.storage_path = {tmp_path / 'media'}\n"
    )

    def run(*argv: str) -> tuple[int, str, str]:
        DepotManager._clear()
        capsys.readouterr()
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def _store(tmp_path: Path, content: bytes = b"stored", name: str = "a.txt") -> str:
    media = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    file_id = media.create(content, name, "text/plain")
    DepotManager._clear()
    return file_id


# -- what is printed ----------------------------------------------------------


def test_emoji_codes_in_names_and_messages_are_shown_as_written(run: Run, tmp_path: Path) -> None:
    """rich turns ':warning:' into a symbol: a stored name must be listed as it is."""
    _store(tmp_path, name=":warning:.txt")
    status, out, _ = run("ls", "media", "-l")
    assert status == 0 and ":warning:.txt" in out
    status, _, err = run("ls", ":sa:")
    assert status == 3 and "no depot named ':sa:'" in err


def test_bytes_that_are_not_utf8_are_shown_escaped_and_json_stays_utf8(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A name from argv or the environment holding a byte that is not UTF-8 (a lone
    surrogate in Python): written raw, it is invalid UTF-8, or \\x9b, the C1 CSI."""
    assert shown("a\udcff\udc9bb") == "a\\xff\\x9bb"
    Output(json_output=True).data({"file": "a\udcff\udc9b.txt"})
    out = capsys.readouterr().out
    out.encode("utf-8")  # no surrogate left to write as a raw byte
    assert json.loads(out) == {"file": "a\udcff\udc9b.txt"}


# -- configuration ----------------------------------------------------------------


def test_a_toml_value_of_the_wrong_type_is_a_configuration_error(run: Run, tmp_path: Path) -> None:
    (tmp_path / "depot.toml").write_text(
        '[depot.media]\ndepot.backend = "local"\ndepot.storage_path = 5\n'
    )
    status, _, err = run("-c", "depot.toml", "ls")
    assert status == 3, err
    assert "depot 'media' (depot.toml)" in err and "--traceback" not in err


def test_an_app_that_prints_leaves_json_and_get_output_alone(run: Run, tmp_path: Path) -> None:
    (tmp_path / "chatty_app.py").write_text(
        "print('configuring depots')\ndef setup():\n    print('setup done')\n"
    )
    file_id = _store(tmp_path, b"the bytes")
    status, out, err = run("--app", "chatty_app:setup", "ls", "--json")
    assert status == 0, err
    assert json.loads(out)[0]["name"] == "media"
    assert "configuring depots" in err and "setup done" in err
    status, out, err = run("--app", "chatty_app:setup", "get", f"media/{file_id}")
    assert (status, out) == (0, "the bytes"), err


def test_an_app_that_exits_is_a_configuration_error_not_a_silent_success(
    run: Run, tmp_path: Path
) -> None:
    (tmp_path / "exiting_app.py").write_text("import sys\nsys.exit(0)\n")
    status, _, err = run("--app", "exiting_app", "ls")
    assert status == 3
    assert "--app exiting_app" in err and "__main__" in err


# -- get -o -------------------------------------------------------------------------


def test_get_does_not_follow_a_symlink_planted_at_a_temporary_name(
    run: Run, tmp_path: Path
) -> None:
    file_id = _store(tmp_path, b"downloaded")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / ".out.bin.depot-partial").symlink_to(victim)
    status, _, err = run("get", f"media/{file_id}", "-o", "out.bin")
    assert status == 0, err
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / "out.bin").read_bytes() == b"downloaded"
    assert not (tmp_path / "out.bin").is_symlink()


def test_get_writes_a_file_with_the_permissions_open_would_give(run: Run, tmp_path: Path) -> None:
    file_id = _store(tmp_path)
    umask = os.umask(0o022)
    try:
        assert run("get", f"media/{file_id}", "-o", "out.txt")[0] == 0
    finally:
        os.umask(umask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644


def test_get_onto_a_directory_says_so(run: Run, tmp_path: Path) -> None:
    file_id = _store(tmp_path)
    (tmp_path / "somedir").mkdir()
    status, _, err = run("get", f"media/{file_id}", "-o", "somedir")
    assert status == 1
    assert "cannot write 'somedir'" in err and "--traceback" not in err
    assert list((tmp_path / "somedir").iterdir()) == []


def test_get_never_writes_into_a_depots_own_storage(run: Run, tmp_path: Path) -> None:
    first = _store(tmp_path, b"first")
    second = _store(tmp_path, b"second")
    stored = tmp_path / "media" / second / "file"
    status, _, err = run("get", f"media/{first}", "-o", str(stored))
    assert status == 2, err
    assert "storage of depot 'media'" in err
    assert stored.read_bytes() == b"second"
    assert run("verify", "media")[0] == 0


# -- put, rm: nothing half done ----------------------------------------------------------


def test_put_checks_every_file_before_storing_any(run: Run, tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("good")
    status, out, err = run("put", "-d", "media", "good.txt", "missing.txt", "--json")
    assert status == 2 and "cannot read 'missing.txt'" in err
    assert out == ""
    assert run("ls", "media")[1] == ""  # good.txt is not stored with its id unreported


def test_rm_checks_every_path_before_deleting_any(run: Run, tmp_path: Path) -> None:
    file_id = _store(tmp_path)
    status, _, err = run("rm", f"media/{file_id}", f"mediaa/{ID}")
    assert status == 3 and "no depot named 'mediaa'" in err
    assert run("ls", "media")[1].split() == [file_id]


# -- gc, verify: the rows --------------------------------------------------------------


def test_gc_refuses_a_named_model_without_file_columns(run: Run, tmp_path: Path) -> None:
    """Its rows refer to no file, so every file would look like garbage and be deleted."""
    file_id = _store(tmp_path)
    args = ["gc", "media", "--db", f"sqlite:///{tmp_path}/app.db", "--grace", "0"]
    status, _, err = run(*args, "-m", "tests.ops.models:Plain", "--delete")
    assert status == 3, err
    assert "Plain" in err and "no file column" in err
    assert run("ls", "media")[1].split() == [file_id]


@pytest.mark.parametrize("command", [["gc", "media"], ["verify"]])
def test_a_database_that_cannot_be_opened_is_unavailable(
    run: Run, tmp_path: Path, command: list[str]
) -> None:
    url = f"sqlite:///{tmp_path}/no/such/dir/app.db"
    status, _, err = run(*command, "--db", url, "-m", "tests.ops.models")
    assert status == 5, err
    assert "cannot connect to the database" in err and "--traceback" not in err


# -- serve ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mountpoint", ["", "x"])
def test_serve_with_a_bad_mountpoint_is_a_usage_error(run: Run, mountpoint: str) -> None:
    status, _, err = run("serve", "--port", "0", "--mountpoint", mountpoint)
    assert status == 2
    assert "--mountpoint" in err and "must be an absolute path" in err


def test_serve_on_a_port_in_use_says_what_to_do(run: Run) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = run("serve", "--port", str(port))
    assert status == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert "--traceback" not in err


# -- a closed standard output ---------------------------------------------------------------


@pytest.mark.parametrize("args", [["ls", "media"], ["ls", "media", "--json"], ["get", "FILE"]])
def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path, args: list[str]) -> None:
    """``depot ls media | head -1``: once head has gone, no BrokenPipeError message."""
    import subprocess

    from tests.cli.conftest import REPO, SCRIPT

    media = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    for _ in range(3):
        file_id = media.create(b"x" * 100_000, "big.bin")
    (tmp_path / "depot.ini").write_text(
        f"[depot:media]\ndepot.storage_path = {tmp_path / 'media'}\n"
    )
    args = [f"media/{file_id}" if a == "FILE" else a for a in args]
    read, write = os.pipe()
    os.close(read)  # head has read its line and gone
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    environ["PYTHONPATH"] = str(REPO)
    try:
        done = subprocess.run(
            [str(SCRIPT), *args], cwd=tmp_path, env=environ, stdout=write, stderr=subprocess.PIPE
        )
    finally:
        os.close(write)
    assert done.stderr == b""
    assert done.returncode == 141


# -- the rest of the commands -----------------------------------------------------------


def test_ls_long_lists_the_other_files_when_one_has_corrupt_metadata(
    run: Run, tmp_path: Path
) -> None:
    good, bad = _store(tmp_path, name="good.txt"), _store(tmp_path, name="bad.txt")
    (tmp_path / "media" / bad / "metadata.json").write_text("{not json")
    status, out, err = run("ls", "media", "-l", "--json")
    assert status == 1
    assert [f["file_id"] for f in json.loads(out)] == [good]
    assert f"media/{bad}" in err and "Restore the file" in err and "--traceback" not in err


def test_copy_of_a_depot_onto_itself_is_a_usage_error(run: Run) -> None:
    status, _, err = run("copy", "media", "media")
    assert status == 2 and "give two depots" in err


def test_a_grace_too_long_to_count_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    args = ["gc", "media", "--db", f"sqlite:///{tmp_path}/app.db", "-m", "tests.ops.models"]
    status, _, err = run(*args, "--grace", "99999999999999d")
    assert status == 2 and "--grace" in err


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["ls", "media"], 141),
        (["ls", "media", "--json"], 141),
        (["rm", "--missing-ok", f"media/{ID}"], 0),
    ],
)
def test_a_closed_standard_output_is_a_closed_pipe_not_a_traceback(
    tmp_path: Path, args: list[str], status: int
) -> None:
    """``depot ls media >&-``: Python has no sys.stdout at all. A command that has nothing
    to write still works."""
    import subprocess

    from tests.cli.conftest import REPO, SCRIPT

    media = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    media.create(b"x", "x.txt")
    (tmp_path / "depot.ini").write_text(
        f"[depot:media]\ndepot.storage_path = {tmp_path / 'media'}\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    environ["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" "$@" >&-', str(SCRIPT), *args],
        cwd=tmp_path,
        env=environ,
        stderr=subprocess.PIPE,
    )
    assert done.stderr == b""
    assert done.returncode == status


def test_put_of_a_named_pipe_reads_it_once(tmp_path: Path) -> None:
    """Checking FILE by opening it would take a FIFO's writer and leave the real read
    waiting for a second one."""
    import subprocess

    from tests.cli.conftest import REPO, SCRIPT

    (tmp_path / "depot.ini").write_text(
        f"[depot:media]\ndepot.storage_path = {tmp_path / 'media'}\n"
    )
    os.mkfifo(tmp_path / "dump.sql")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    environ["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        ["sh", "-c", '(printf "select 1;" > dump.sql &) && exec "$0" put dump.sql', str(SCRIPT)],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    media = DepotManager.configure("media", {"depot.storage_path": str(tmp_path / "media")})
    with media.get(done.stdout.decode().strip().split("/")[1]) as stored:
        assert stored.read() == b"select 1;"


def test_ids_that_are_not_text_are_a_usage_error(run: Run, tmp_path: Path) -> None:
    (tmp_path / "ids.bin").write_bytes(b"\xf7\xff\x00\x9b")
    (tmp_path / "depot.ini").write_text(
        f"[depot:media]\ndepot.storage_path = {tmp_path / 'media'}\n"
        f"[depot:other]\ndepot.storage_path = {tmp_path / 'other'}\n"
    )
    status, _, err = run("copy", "media", "other", "--ids", "ids.bin")
    assert status == 2 and "--ids" in err and "--traceback" not in err


@pytest.mark.parametrize(
    ("session", "status", "message"),
    [
        ("unbound_ming", 2, "write MODULE:NAME"),
        ("os:path", 3, "not a Ming ODMSession"),
        ("unbound_ming:session", 3, "not bound to a datastore"),
    ],
)
def test_a_ming_session_that_is_not_one_is_explained(
    run: Run, tmp_path: Path, session: str, status: int, message: str
) -> None:
    pytest.importorskip("ming")
    (tmp_path / "unbound_ming.py").write_text(
        "from ming.odm import ODMSession\nsession = ODMSession(bind=None)\n"
    )
    args = ["--ming-session", session, "--ming-models", "tests.ops.ming_models"]
    got, _, err = run("gc", "media", *args)
    assert got == status, err
    assert message in err and "--traceback" not in err


@pytest.mark.parametrize("variable", ["FORCE_COLOR", "TTY_COMPATIBLE"])
def test_no_progress_bars_off_a_terminal_even_when_colour_is_forced(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """CI sets FORCE_COLOR for colours: bars redrawn a line at a time would fill its log."""
    monkeypatch.setenv(variable, "1")
    assert not sys.stderr.isatty()
    assert Output().interactive is False


def test_get_onto_a_name_near_the_length_limit(run: Run, tmp_path: Path) -> None:
    """The temporary name beside FILE is longer than FILE: it must still be a valid name."""
    file_id = _store(tmp_path, b"long")
    name = "é" * 127  # 254 bytes
    status, _, err = run("get", f"media/{file_id}", "-o", name)
    assert status == 0, err
    assert (tmp_path / name).read_bytes() == b"long"


def test_get_onto_a_path_ending_in_a_slash_is_not_a_file_named_like_the_directory(
    run: Run, tmp_path: Path
) -> None:
    file_id = _store(tmp_path)
    status, _, err = run("get", f"media/{file_id}", "-o", "newdir/")
    assert status == 1 and "cannot write 'newdir/'" in err
    assert not (tmp_path / "newdir").exists()


@pytest.mark.parametrize("spec", ["../myapp", ".myapp", "myapp.py", "src/myapp:setup"])
def test_an_app_given_as_a_path_is_told_to_give_a_module_name(run: Run, spec: str) -> None:
    status, _, err = run("--app", spec, "ls")
    assert status == 3, err
    assert "a module name" in err and "--traceback" not in err


def test_a_traceback_shown_on_request_sends_no_control_sequence(run: Run, tmp_path: Path) -> None:
    (tmp_path / "clearing_app.py").write_text(
        "def setup():\n    raise RuntimeError('name \\x1b[2J\\x9b31m')\n"
    )
    status, _, err = run("--traceback", "--app", "clearing_app:setup", "ls")
    assert status == 1
    assert "Traceback" in err and "clearing_app.py" in err
    assert "\x1b" not in err and "\x9b" not in err
    assert "name \\x1b[2J\\x9b31m" in err


def test_get_onto_a_symlink_replaces_the_link_not_the_stored_file_it_points_to(
    run: Run, tmp_path: Path
) -> None:
    first = _store(tmp_path, b"first")
    second = _store(tmp_path, b"second")
    (tmp_path / "link").symlink_to(tmp_path / "media" / second / "file")
    status, _, err = run("get", f"media/{first}", "-o", "link")
    assert status == 0, err
    assert not (tmp_path / "link").is_symlink()
    assert (tmp_path / "link").read_bytes() == b"first"
    assert (tmp_path / "media" / second / "file").read_bytes() == b"second"


def test_migrate_checks_its_sources(run: Run, tmp_path: Path) -> None:
    (tmp_path / "depot.ini").write_text(
        f"[depot:media]\ndepot.storage_path = {tmp_path / 'media'}\n"
        f"[depot:other]\ndepot.storage_path = {tmp_path / 'other'}\n"
    )
    args = ["migrate", "other", "--db", f"sqlite:///{tmp_path}/app.db", "-m", "tests.ops.models"]
    status, _, err = run(*args, "--source", "nope")
    assert status == 3 and "no depot named 'nope'" in err
    status, _, err = run(*args, "--source", "other")
    assert status == 2 and "both a source and the target" in err


def test_a_database_without_the_models_tables_is_said_in_one_short_line(
    run: Run, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    status, _, err = run("verify", "--db", url, "-m", "tests.ops.models")
    assert status == 1
    assert "no such table" in err and "check that --db" in err
    assert "[SQL:" not in err and "--traceback" in err


def test_a_backend_that_prints_while_working_leaves_json_alone(run: Run, tmp_path: Path) -> None:
    (tmp_path / "chatty_backend.py").write_text(
        "from depot.io.memory import MemoryFileStorage\n"
        "class Chatty(MemoryFileStorage):\n"
        "    def list(self):\n"
        "        print('listing...')\n"
        "        return super().list()\n"
    )
    (tmp_path / "depot.ini").write_text("[depot:chat]\ndepot.backend = chatty_backend.Chatty\n")
    status, out, err = run("ls", "chat", "--json")
    assert status == 0, err
    assert json.loads(out) == [] and "listing..." in err
