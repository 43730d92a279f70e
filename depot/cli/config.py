"""Where the ``depot`` command finds its depots: a config file, environment variables.

A depot's settings are the flat ``depot.*`` keys that
:meth:`DepotManager.configure <depot.manager.DepotManager.configure>` reads,
so the settings an application passes in Python can be pasted here as they are.

An INI file has a section per depot, ``[depot:NAME]``; a TOML file a table,
``[depot.NAME]``. A ``[depot]`` section (or table) may name the default depot
with ``default = NAME``; otherwise the first depot is the default::

    # depot.ini                          # depot.toml
    [depot]                              [depot]
    default = media                      default = "media"

    [depot:media]                        [depot.media]
    depot.backend = local                depot.backend = "local"
    depot.storage_path = /srv/media      depot.storage_path = "/srv/media"

Environment variables ``DEPOT_<NAME>__<SETTING>`` (two underscores) add a
setting to a depot, or override the file's: ``DEPOT_MEDIA__STORAGE_PATH=/srv``
is ``depot.storage_path`` of the depot ``media`` (names and settings are read
in lower case; the name is the file's depot of that name in any case).
``DEPOT_DEFAULT`` names the default depot.

Nothing here prints: mistakes raise :class:`~depot.exceptions.ConfigurationError`
saying where they are and what to write instead.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depot.exceptions import ConfigurationError

__all__ = ["CONFIG_ENV", "SEARCHED", "Config", "find_config_file", "load_config"]

#: The environment variable naming the config file, when ``--config`` is not given.
CONFIG_ENV = "DEPOT_CONFIG"

#: The files looked for in the current directory, in this order, when neither
#: ``--config`` nor ``DEPOT_CONFIG`` names one.
SEARCHED = ("depot.toml", "depot.ini")

_ENV_PREFIX = "DEPOT_"
_ENV_DEFAULT = "DEPOT_DEFAULT"


@dataclass
class Config:
    """The depots a config describes: their settings, in order, and the default one."""

    #: The settings of each depot, by name, in the order they were given.
    depots: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The default depot, or ``None`` for the first one.
    default: str | None = None
    #: Where the settings came from, for messages: a file, the environment.
    sources: list[str] = field(default_factory=list)

    def configure(self) -> None:
        """Configure every depot with :class:`~depot.manager.DepotManager`, then the default."""
        from depot.manager import DepotManager

        for name, settings in self.depots.items():
            try:
                DepotManager.configure(name, settings)
            except ConfigurationError as exc:
                raise ConfigurationError(f"depot {name!r} ({self.where()}): {exc}") from exc
            except (TypeError, ValueError) as exc:
                # A TOML number or list where the backend takes a string (a path, a URL).
                raise ConfigurationError(
                    f"depot {name!r} ({self.where()}): a setting has a value the backend "
                    f"cannot take ({type(exc).__name__}: {exc}); check each value's type, "
                    'as depot.storage_path = "/srv/media" (quoted) in TOML.'
                ) from exc
        if self.default is not None:
            if self.default not in self.depots:
                raise ConfigurationError(
                    f"default = {self.default!r} ({self.where()}): no such depot; "
                    f"the depots are {', '.join(map(repr, self.depots)) or 'none'}."
                )
            DepotManager.set_default(self.default)

    def where(self) -> str:
        return " and ".join(self.sources) or "no config"


def find_config_file(given: str | os.PathLike[str] | None, cwd: Path | None = None) -> Path | None:
    """The config file to read: ``given``, else ``$DEPOT_CONFIG``, else one of :data:`SEARCHED`."""
    if given is None:
        given = os.environ.get(CONFIG_ENV) or None
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise ConfigurationError(
                f"config file {str(path)!r} does not exist or is not a file; "
                "give the path of an INI or TOML file."
            )
        return path
    here = cwd or Path.cwd()
    for name in SEARCHED:
        if (here / name).is_file():
            return here / name
    return None


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the depots of the file at ``path`` (INI, or TOML by its ``.toml`` suffix) and of
    the ``DEPOT_*`` variables of ``environ`` (the process's environment by default)."""
    config = Config()
    if path is not None:
        path = Path(path)
        if path.suffix.lower() == ".toml":
            _read_toml(path, config)
        else:
            _read_ini(path, config)
        config.sources.append(str(path))
    _read_environ(os.environ if environ is None else environ, config)
    return config


def _read_ini(path: Path, config: Config) -> None:
    # No interpolation: settings are passed as written ('%' is common in URLs).
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    try:
        # utf-8-sig: an editor's byte order mark must not hide the first section.
        with path.open(encoding="utf-8-sig") as handle:
            parser.read_file(handle)
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: not a valid INI file ({exc}).") from exc
    for section in parser.sections():
        if section == "depot":
            _read_head(dict(parser[section]), f"{path} [depot]", config)
        elif section.startswith("depot:"):
            name = section[len("depot:") :].strip()
            where = f"{path} [{section}]"
            if name in config.depots:
                raise ConfigurationError(
                    f"{where}: depot {name!r} is configured twice; keep one section for it."
                )
            config.depots[_name(name, where)] = _settings(dict(parser[section]), where)


def _read_toml(path: Path, config: Config) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the 'cli' extra installs tomli, the same parser
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ConfigurationError(
                f"{path}: reading TOML on Python 3.10 needs the 'tomli' package "
                "(pip install tomli), or write the config as INI."
            ) from exc
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: not a valid TOML file ({exc}).") from exc
    table = data.get("depot", {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: 'depot' must be a table ([depot]), not a value.")
    head = {}
    for key, value in table.items():
        where = f"{path} [depot.{key}]"
        if isinstance(value, dict):
            config.depots[_name(key, where)] = _settings(_flatten(value), where)
        else:
            head[key] = value
    _read_head(head, f"{path} [depot]", config)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    # TOML reads `depot.backend = "local"` as {"depot": {"backend": "local"}}.
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_head(values: Mapping[str, Any], where: str, config: Config) -> None:
    for key, value in values.items():
        if key != "default":
            raise ConfigurationError(
                f"{where}: unknown key {key!r}; this section only takes default = NAME "
                "(each depot's settings go in a section of its own)."
            )
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{where}: default must name a depot, not {value!r}.")
        config.default = value.strip()


def _name(name: str, where: str) -> str:
    if not name or "/" in name or name != name.strip():
        raise ConfigurationError(
            f"{where}: {name!r} cannot name a depot; use letters, digits, '_' or '-' "
            "(no '/', which separates the depot from the file id in paths)."
        )
    return name


def _settings(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    for key in values:
        if not key.startswith("depot."):
            # 'Depot.Backend': the same key in lower case; 'backend': the prefix missing.
            spelling = key.lower() if key.lower().startswith("depot.") else f"depot.{key}"
            raise ConfigurationError(
                f"{where}: key {key!r} does not start with 'depot.'; write {spelling}, "
                "the name DepotManager.configure() reads."
            )
    return dict(values)


def _read_environ(environ: Mapping[str, str], config: Config) -> None:
    used = False
    for variable, value in sorted(environ.items()):
        if variable == _ENV_DEFAULT:
            config.default = value.strip() or None
            used = True
            continue
        if not variable.startswith(_ENV_PREFIX) or "__" not in variable[len(_ENV_PREFIX) :]:
            continue  # DEPOT_CONFIG, or a variable of somebody else's
        name, _, setting = variable[len(_ENV_PREFIX) :].partition("__")
        if not name or not setting:
            raise ConfigurationError(
                f"environment variable {variable}: write DEPOT_<NAME>__<SETTING>, "
                "as DEPOT_MEDIA__STORAGE_PATH=/srv/media."
            )
        name = _name(name.lower(), variable)
        # A variable's name is upper case: it overrides the file's depot of any case.
        name = next((known for known in config.depots if known.lower() == name), name)
        depot = config.depots.setdefault(name, {})
        depot[f"depot.{setting.lower()}"] = value
        used = True
    if used:
        config.sources.append("DEPOT_* environment variables")
