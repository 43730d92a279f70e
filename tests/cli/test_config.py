"""depot.cli.config: depots from INI, TOML and the environment, and the mistakes in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from depot.cli.config import find_config_file, load_config
from depot.exceptions import ConfigurationError
from depot.manager import DepotManager


def test_ini_sections_give_depots_with_the_settings_the_python_api_takes(tmp_path: Path) -> None:
    path = tmp_path / "depot.ini"
    path.write_text(
        "[app:main]\nuse = egg:myapp\n\n"  # other sections are not depots
        "[depot]\ndefault = b\n\n"
        "[depot:a]\ndepot.backend = memory\n\n"
        f"[depot:b]\ndepot.backend = local\ndepot.storage_path = {tmp_path}/b%20x\n"
    )
    config = load_config(path, environ={})
    assert config.depots == {
        "a": {"depot.backend": "memory"},
        # No interpolation: the '%' of a URL-encoded value stays as written.
        "b": {"depot.backend": "local", "depot.storage_path": f"{tmp_path}/b%20x"},
    }
    config.configure()
    assert DepotManager.get_default() == "b"
    assert type(DepotManager.get("a")).__name__ == "MemoryFileStorage"


def test_toml_tables_with_dotted_keys_give_the_same_settings(tmp_path: Path) -> None:
    path = tmp_path / "depot.toml"
    path.write_text(
        '[depot]\ndefault = "b"\n\n'
        '[depot.a]\ndepot.backend = "memory"\n\n'
        '[depot.b]\ndepot.backend = "local"\ndepot.storage_path = "/srv/b"\ndepot.fsync = false\n'
    )
    config = load_config(path, environ={})
    assert config.default == "b"
    assert config.depots == {
        "a": {"depot.backend": "memory"},
        "b": {"depot.backend": "local", "depot.storage_path": "/srv/b", "depot.fsync": False},
    }


def test_environment_adds_and_overrides_settings(tmp_path: Path) -> None:
    path = tmp_path / "depot.ini"
    path.write_text("[depot:media]\ndepot.backend = local\ndepot.storage_path = /old\n")
    config = load_config(
        path,
        environ={
            "DEPOT_MEDIA__STORAGE_PATH": "/new",
            "DEPOT_CACHE__BACKEND": "memory",
            "DEPOT_DEFAULT": "cache",
            "DEPOT_CONFIG": "ignored here",
            "DEPOTS": "somebody else's",
        },
    )
    assert config.depots == {
        "media": {"depot.backend": "local", "depot.storage_path": "/new"},
        "cache": {"depot.backend": "memory"},
    }
    assert config.default == "cache"
    assert config.where() == f"{path} and DEPOT_* environment variables"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("depot.ini", "[depot:a]\nbackend = local\n", "write depot.backend"),
        ("depot.toml", '[depot.a]\nbackend = "local"\n', "write depot.backend"),
        ("depot.ini", "[depot]\ndefalt = a\n", "unknown key 'defalt'"),
        ("depot.ini", "[depot:a/b]\ndepot.backend = memory\n", "no '/'"),
        ("depot.ini", "[depot:a\n", "not a valid INI file"),
        ("depot.toml", "[depot.a\n", "not a valid TOML file"),
        ("depot.toml", 'depot = "x"\n', "'depot' must be a table"),
        ("depot.toml", "[depot]\ndefault = 3\n", "default must name a depot"),
        ("depot.ini", b"[depot:a]\ndepot.x = \xff\n", "not a valid INI file"),
    ],
)
def test_mistakes_say_where_and_what_to_write(
    tmp_path: Path, name: str, text: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_config(path, environ={})
    assert str(path) in str(caught.value)


def test_a_bad_setting_names_its_depot_and_file(tmp_path: Path) -> None:
    path = tmp_path / "depot.ini"
    path.write_text("[depot:media]\ndepot.backend = local\ndepot.storage_pth = /x\n")
    with pytest.raises(ConfigurationError, match=r"depot 'media' \(.*depot.ini\).*storage_pth"):
        load_config(path, environ={}).configure()


def test_a_default_that_is_not_a_depot_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="default = 'nope'.*no such depot"):
        load_config(None, environ={"DEPOT_DEFAULT": "nope"}).configure()


def test_environment_variable_without_a_name_or_setting_is_explained() -> None:
    with pytest.raises(ConfigurationError, match="DEPOT_<NAME>__<SETTING>"):
        load_config(None, environ={"DEPOT___BACKEND": "memory"})


def test_the_file_is_given_then_named_by_the_environment_then_found_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEPOT_CONFIG", raising=False)
    assert find_config_file(None, cwd=tmp_path) is None
    (tmp_path / "depot.ini").write_text("")
    assert find_config_file(None, cwd=tmp_path) == tmp_path / "depot.ini"
    (tmp_path / "depot.toml").write_text("")
    assert find_config_file(None, cwd=tmp_path) == tmp_path / "depot.toml"
    other = tmp_path / "other.ini"
    other.write_text("")
    monkeypatch.setenv("DEPOT_CONFIG", str(other))
    assert find_config_file(None, cwd=tmp_path) == other
    assert find_config_file(tmp_path / "depot.ini", cwd=tmp_path) == tmp_path / "depot.ini"
    with pytest.raises(ConfigurationError, match="does not exist"):
        find_config_file(tmp_path / "missing.ini")
    with pytest.raises(ConfigurationError, match="not a file"):
        find_config_file(tmp_path)


def test_an_ini_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "depot.ini"
    path.write_bytes(b"\xef\xbb\xbf[depot:a]\ndepot.backend = memory\n")
    assert load_config(path, environ={}).depots == {"a": {"depot.backend": "memory"}}


def test_a_variable_overrides_the_depot_of_the_file_whatever_the_case_of_its_name(
    tmp_path: Path,
) -> None:
    """DEPOT_MEDIA__... names are upper case: they must not make a second depot 'media'
    beside the file's 'Media', and leave 'Media' as it was."""
    path = tmp_path / "depot.ini"
    path.write_text("[depot:Media]\ndepot.backend = local\ndepot.storage_path = /old\n")
    config = load_config(path, environ={"DEPOT_MEDIA__STORAGE_PATH": "/new"})
    assert config.depots == {"Media": {"depot.backend": "local", "depot.storage_path": "/new"}}


def test_a_key_in_odd_case_is_told_its_lower_case_spelling(tmp_path: Path) -> None:
    path = tmp_path / "depot.ini"
    path.write_text("[depot:a]\nDepot.Backend = memory\n")
    with pytest.raises(ConfigurationError, match="write depot.backend,"):
        load_config(path, environ={})


def test_two_ini_sections_naming_one_depot_are_refused(tmp_path: Path) -> None:
    """'[depot:media]' and '[depot: media]' are two sections to configparser, one depot
    here: the second must not silently replace the first."""
    path = tmp_path / "depot.ini"
    path.write_text(
        "[depot:media]\ndepot.backend = local\ndepot.storage_path = /srv/media\n"
        "[depot: media]\ndepot.backend = memory\n"
    )
    with pytest.raises(ConfigurationError, match="media.*twice"):
        load_config(path, environ={})
