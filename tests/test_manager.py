"""DepotManager: configuring depots from flat settings and finding files by path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import depot.manager
from depot.exceptions import ConfigurationError, InvalidFileIdError, UnknownDepotError
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.manager import DepotManager


def test_first_configured_depot_is_the_default(tmp_path: Path) -> None:
    first = DepotManager.configure("first", {"depot.storage_path": str(tmp_path)})
    second = DepotManager.configure("second", {"depot.backend": "memory"})
    assert isinstance(first, LocalFileStorage) and first.storage_path == str(tmp_path)
    assert isinstance(second, MemoryFileStorage)
    assert DepotManager.get_default() == "first"
    assert DepotManager.get() is first
    assert DepotManager.get("second") is second
    DepotManager.set_default("second")
    assert DepotManager.get() is second


def test_without_a_backend_setting_the_local_backend_is_used(tmp_path: Path) -> None:
    storage = DepotManager.configure("default", {"depot.storage_path": str(tmp_path)})
    assert type(storage) is LocalFileStorage


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("memory", MemoryFileStorage),
        ("local", LocalFileStorage),
        ("depot.io.memory.MemoryFileStorage", MemoryFileStorage),
    ],
)
def test_backend_by_short_name_or_dotted_path(tmp_path: Path, name: str, cls: type) -> None:
    storage = DepotManager.from_config({"depot.backend": name, "depot.storage_path": str(tmp_path)})
    assert type(storage) is cls


def test_other_prefix_and_unrelated_keys(tmp_path: Path) -> None:
    settings = {
        "media.backend": "local",
        "media.storage_path": str(tmp_path),
        "media.fsync": "false",
        "depot.backend": "memory",
        "sqlalchemy.url": "sqlite://",
    }
    storage = DepotManager.configure("media", settings, prefix="media.")
    assert isinstance(storage, LocalFileStorage) and storage.fsync is False


def test_configuring_a_name_twice_is_an_error() -> None:
    DepotManager.configure("default", {"depot.backend": "memory"})
    with pytest.raises(ConfigurationError, match="'default' has already been configured") as raised:
        DepotManager.configure("default", {"depot.backend": "memory"})
    assert isinstance(raised.value, RuntimeError)  # what filedepot raised


def test_a_failed_configure_registers_nothing() -> None:
    with pytest.raises(ConfigurationError):
        DepotManager.configure("default", {"depot.backend": "nope"})
    with pytest.raises(ConfigurationError, match="No depots have been configured"):
        DepotManager.get_default()
    assert DepotManager.get() is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"depot.backend": "nope"},
            r"depot.backend = 'nope' is not a backend. Use one of local, memory, s3",
        ),
        ({"depot.backend": ""}, r"depot.backend must be a backend name, not ''"),
        ({"depot.backend": "no.such.Module"}, r"there is no module 'no'"),
        (
            {"depot.backend": "depot.io.local.Nope"},
            r"module 'depot.io.local' has no class 'Nope' \(storages it has: LocalFileStorage\)",
        ),
        ({"depot.backend": "local"}, r"LocalFileStorage needs the setting depot.storage_path"),
        (
            {"depot.storage_path": "/x", "depot.storage_pth": "/y"},
            r"depot.storage_pth is not a setting of LocalFileStorage; its settings are: "
            r"depot.storage_path, depot.fsync",
        ),
        (
            {"depot.storage_path": "/x", "depot.fsync": "maybe"},
            r"LocalFileStorage \(depot.\* settings\): fsync must be true or false, not 'maybe'",
        ),
    ],
)
def test_bad_settings_are_named_with_the_fix(settings: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DepotManager.configure("default", settings)


def test_memory_backend_ignores_other_settings() -> None:
    # So that a test configuration can swap the backend and keep the rest.
    storage = DepotManager.from_config(
        {"depot.backend": "memory", "depot.storage_path": "/nowhere"}
    )
    assert isinstance(storage, MemoryFileStorage)


def test_backend_missing_its_library_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "needs_lib_backend.py").write_text("import surely_not_installed_lib\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(depot._settings.EXTRAS, "needs_lib_backend", "s3")
    with pytest.raises(
        ImportError,
        match=r"needs_lib_backend needs the 'surely_not_installed_lib' "
        r"package; install the 's3' extra: pip install 'depot-storage\[s3\]'",
    ):
        DepotManager.from_config({"depot.backend": "needs_lib_backend.Storage"})
    sys.modules.pop("needs_lib_backend", None)


def test_set_default_to_unknown_depot() -> None:
    DepotManager.configure("default", {"depot.backend": "memory"})
    with pytest.raises(
        UnknownDepotError,
        match=r"set_default\('media'\): no such depot "
        r"\(configured: 'default'\). Call DepotManager"
        r".configure\('media', settings\) first.",
    ) as raised:
        DepotManager.set_default("media")
    assert isinstance(raised.value, RuntimeError)


def test_alias() -> None:
    storage = DepotManager.configure("new", {"depot.backend": "memory"})
    DepotManager.alias("old", "new")
    assert DepotManager.resolve_alias("old") == "new"
    assert DepotManager.resolve_alias("new") == "new"
    assert DepotManager.get("old") is storage
    file_id = storage.create(b"x")
    assert DepotManager.get_file(f"old/{file_id}").read() == b"x"


def test_alias_errors_are_value_errors_as_in_filedepot() -> None:
    DepotManager.configure("a", {"depot.backend": "memory"})
    DepotManager.configure("b", {"depot.backend": "memory"})
    with pytest.raises(UnknownDepotError, match="no depot named 'c'") as raised:
        DepotManager.alias("x", "c")
    assert isinstance(raised.value, ValueError)
    with pytest.raises(ConfigurationError, match="'b' is the name of a configured depot") as raised:
        DepotManager.alias("b", "a")
    assert isinstance(raised.value, ValueError)


def test_resolve_alias_of_unknown_names_and_cycles() -> None:
    assert DepotManager.resolve_alias("nothing") is None
    DepotManager._aliases.update({"x": "y", "y": "x"})  # only reachable by hand
    assert DepotManager.resolve_alias("x") is None
    assert DepotManager.get("x") is None


def test_get_file() -> None:
    storage = DepotManager.configure("default", {"depot.backend": "memory"})
    file_id = storage.create(b"content", filename="c.txt")
    assert DepotManager.get_file(f"default/{file_id}").filename == "c.txt"


@pytest.mark.parametrize("path", ["no-slash", "/id", "default/", "", None])
def test_get_file_with_a_malformed_path(path) -> None:
    DepotManager.configure("default", {"depot.backend": "memory"})
    with pytest.raises(InvalidFileIdError, match="expected '<depot name>/<file id>'"):
        DepotManager.get_file(path)


def test_get_file_from_unknown_depot() -> None:
    DepotManager.configure("default", {"depot.backend": "memory"})
    with pytest.raises(
        UnknownDepotError, match=r"no depot named 'media' \(configured: 'default'\)"
    ):
        DepotManager.get_file("media/00000000-0000-4000-8000-000000000000")


def test_middleware_registry() -> None:
    with pytest.raises(ConfigurationError, match="make_middleware"):
        DepotManager.get_middleware()
    with pytest.raises(ConfigurationError, match="make_middleware"):
        DepotManager.url_for("default/00000000-0000-4000-8000-000000000000")

    class FakeMiddleware:
        def url_for(self, path: str) -> str:
            return "/depot/" + path

    mw = FakeMiddleware()
    DepotManager.set_middleware(mw)
    assert DepotManager.get_middleware() is mw
    assert DepotManager.url_for("default/abc") == "/depot/default/abc"
    with pytest.raises(ConfigurationError, match="already a WSGI middleware"):
        DepotManager.set_middleware(FakeMiddleware())


@pytest.mark.parametrize("forget", ["reset", "_clear"])
def test_reset_and_filedepots_clear_forget_everything(forget: str) -> None:
    DepotManager.configure("default", {"depot.backend": "memory"})
    DepotManager.alias("old", "default")
    DepotManager.set_middleware(object())
    getattr(DepotManager, forget)()
    assert DepotManager.get() is None and DepotManager.get("old") is None
    with pytest.raises(ConfigurationError):
        DepotManager.get_middleware()
    DepotManager.configure("default", {"depot.backend": "memory"})  # allowed again


def test_configuring_a_name_twice_points_at_reset() -> None:
    DepotManager.configure("default", {"depot.backend": "memory"})
    with pytest.raises(ConfigurationError, match=r"DepotManager\.reset\(\)"):
        DepotManager.configure("default", {"depot.backend": "memory"})


def test_module_level_helpers_are_filedepots() -> None:
    assert set(depot.manager.__all__) >= {
        "DepotManager",
        "get_depot",
        "get_file",
        "configure",
        "set_default",
    }
    storage = depot.manager.configure("default", {"depot.backend": "memory"})
    assert depot.manager.get_depot() is storage
    file_id = storage.create(b"x")
    assert depot.manager.get_file(f"default/{file_id}").read() == b"x"
    depot.manager.configure("other", {"depot.backend": "memory"})
    depot.manager.set_default("other")
    assert DepotManager.get_default() == "other"


def test_reset_closes_every_depot_and_logs_a_failed_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from depot.io.memory import MemoryFileStorage

    closed: list[str] = []

    class Closing(MemoryFileStorage):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def close(self) -> None:
            closed.append(self.name)
            if self.name == "broken":
                raise OSError("the server went away")

    for name in ("first", "broken", "last"):
        DepotManager._depots[name] = Closing(name)
    DepotManager._depots["again"] = DepotManager._depots["first"]  # one storage, two names
    with caplog.at_level("WARNING", logger="depot.manager"):
        DepotManager.reset()
    assert closed == ["first", "broken", "last"]  # each once, the failure did not stop it
    assert DepotManager._depots == {}
    [record] = caplog.records
    assert record.name == "depot.manager" and "Closing depot" in record.getMessage()
    assert "the server went away" in record.exc_text


def test_close_is_a_hook_that_does_nothing_by_default() -> None:
    storage = DepotManager.configure("default", {"depot.backend": "memory"})
    file_id = storage.create(b"x")
    storage.close()
    assert storage.get(file_id).read() == b"x"
