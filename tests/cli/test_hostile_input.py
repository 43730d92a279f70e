"""The command against odd input: names that would rewrite the terminal, applications that
print or exit, paths that would overwrite what they should not. In-process, through main()."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from depot.cli import main
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


# -- put, rm: nothing half done ----------------------------------------------------------


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


# -- the rest of the commands -----------------------------------------------------------


def test_copy_of_a_depot_onto_itself_is_a_usage_error(run: Run) -> None:
    status, _, err = run("copy", "media", "media")
    assert status == 2 and "give two depots" in err


def test_a_grace_too_long_to_count_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    args = ["gc", "media", "--db", f"sqlite:///{tmp_path}/app.db", "-m", "tests.ops.models"]
    status, _, err = run(*args, "--grace", "99999999999999d")
    assert status == 2 and "--grace" in err
