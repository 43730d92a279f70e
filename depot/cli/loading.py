"""What the ``depot`` command imports from the application: its setup, models and sessions.

``--app``, ``--models`` and ``--ming-session`` take ``module`` or
``module:attribute``; modules are imported from the current directory first,
as ``python -m`` would.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from depot.exceptions import ConfigurationError

__all__ = ["import_object", "ming_classes", "run_app", "sqlalchemy_models"]


@contextlib.contextmanager
def _application(option: str, spec: str) -> Iterator[None]:
    """Run the application's code with its prints on standard error, where they cannot
    break ``--json`` or the bytes of ``get``; its exit is a mistake to explain, not ours."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except SystemExit as exc:
        raise ConfigurationError(
            f"{option} {spec}: importing it exited (status {exc.code!r}); put the code that "
            "runs it as a program under if __name__ == '__main__':."
        ) from None


def _module(name: str, option: str) -> ModuleType:
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        with _application(option, name):
            return importlib.import_module(name)
    except ImportError as exc:
        if getattr(exc, "name", None) and name.startswith(str(exc.name)):
            raise ConfigurationError(
                f"{option} {name}: no module {exc.name!r} here ({here}) or on sys.path; "
                "run the command from your project's directory or set PYTHONPATH."
            ) from exc
        raise


def import_object(spec: str, option: str) -> tuple[ModuleType, Any]:
    """Import ``module`` or ``module:attr``; return the module and the attribute (or ``None``)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise ConfigurationError(f"{option} {spec!r}: write module or module:name.")
    if module_name.startswith(".") or "/" in module_name or module_name.endswith(".py"):
        raise ConfigurationError(
            f"{option} {spec}: give a module name, as you would import it (myapp.settings), "
            "not a file path; run the command from the directory the module is imported from."
        )
    module = _module(module_name, option)
    if not attribute:
        return module, None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"{option} {spec}: module {module_name!r} has no {attribute!r}."
            ) from None
    return module, target


def run_app(spec: str) -> None:
    """Import the application's module and call ``module:function`` if named, so its
    ``DepotManager.configure(...)`` calls run."""
    _, target = import_object(spec, "--app")
    if target is not None:
        if not callable(target):
            raise ConfigurationError(f"--app {spec}: {spec.partition(':')[2]!r} is not callable.")
        call: Callable[[], Any] = target
        with _application("--app", spec):
            call()


def sqlalchemy_models(specs: list[str]) -> list[Any]:
    """The mapped classes ``specs`` name: ``module:Class``, or every one of ``module``
    that has a file column."""
    import sqlalchemy as sa

    from depot.ops import file_columns

    found: list[Any] = []
    for spec in specs:
        module, target = import_object(spec, "--models")
        if target is not None:
            if not isinstance(sa.inspect(target, raiseerr=False), sa.orm.Mapper):
                raise ConfigurationError(f"--models {spec}: not a mapped SQLAlchemy class.")
            if not file_columns(target):
                # Its rows refer to no file: gc would take every file for garbage.
                raise ConfigurationError(
                    f"--models {spec}: {target.__name__} has no file column, so it refers "
                    "to no file; name the models whose columns hold files."
                )
            found.append(target)
            continue
        mapped = [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__
            and isinstance(sa.inspect(cls, raiseerr=False), sa.orm.Mapper)
            and file_columns(cls)
        ]
        if not mapped:
            raise ConfigurationError(
                f"--models {spec}: module {module.__name__!r} defines no mapped class "
                "with a file column; name the module that defines your models."
            )
        found.extend(mapped)
    return list(dict.fromkeys(found))


def ming_classes(specs: list[str]) -> list[Any]:
    """The Ming mapped classes ``specs`` name, as :func:`sqlalchemy_models` does."""
    from depot.ops.references import ming_file_properties

    found: list[Any] = []
    for spec in specs:
        before = len(found)
        module, target = import_object(spec, "--ming-models")
        candidates = (
            [target]
            if target is not None
            else [
                cls
                for _, cls in inspect.getmembers(module, inspect.isclass)
                if cls.__module__ == module.__name__
            ]
        )
        for cls in candidates:
            try:
                properties = ming_file_properties(cls)
            except Exception:  # noqa: BLE001 - ming raises several kinds for an unmapped class
                if target is not None:
                    raise ConfigurationError(
                        f"--ming-models {spec}: not a mapped Ming class."
                    ) from None
                continue
            if properties:
                found.append(cls)
        if len(found) == before:  # each spec names classes that refer to files
            raise ConfigurationError(
                f"--ming-models {spec}: no Ming mapped class with a file property found."
            )
    return list(dict.fromkeys(found))
