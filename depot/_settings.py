"""From flat settings (``depot.backend``, ``depot.storage_path``, ...) to a storage.

Settings usually come from an application's config file, so every mistake in
them is reported by the name the user wrote, with the valid choices.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from depot.exceptions import ConfigurationError
from depot.http.signing import PUBLIC, ServingPolicy, parse_keys
from depot.io.interfaces import FileStorage

if TYPE_CHECKING:
    from depot.validators import FileValidator

DEFAULT_BACKEND = "depot.io.local.LocalFileStorage"

#: ``depot.backend`` accepts these short names besides dotted paths.
SHORT_NAMES = {
    "local": "depot.io.local.LocalFileStorage",
    "memory": "depot.io.memory.MemoryFileStorage",
    "s3": "depot.io.boto3.S3Storage",
    "gridfs": "depot.io.gridfs.GridFSStorage",
    "gcs": "depot.io.gcs.GCSStorage",
    "sql": "depot.io.sql.SQLStorage",
}

#: The extra that installs the libraries a backend module imports.
EXTRAS = {
    "depot.io.boto3": "s3",
    "depot.io.awss3": "s3",
    "depot.io.gridfs": "gridfs",
    "depot.io.gcs": "gcs",
    "depot.io.sql": "sql",
    "depot.fields.ming": "ming",
    "depot.fields.sqlalchemy": "sqlalchemy",
    "depot.fields.alembic": "alembic",
    "depot.fields._images": "images",
    "depot.fields.specialized.image": "images",
    "depot.io._async": "asgi",
    "depot.http.asgi": "asgi",
    "depot.asgi": "asgi",
    "depot.testing": "test",
    "depot.cli": "cli",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


#: Settings of how a depot's files are served, read by DepotManager, not the backend.
SERVING_SETTINGS = ("private", "signing_keys")

#: Settings of what a depot accepts, applied by FileStorage's create() and replace().
POLICY_SETTINGS = ("max_size", "allowed_types", "allowed_extensions")

#: Settings of chunked uploads, read by DepotManager.
UPLOAD_SETTINGS = ("upload_expiry",)

#: Settings every depot has, whatever its backend.
DEPOT_SETTINGS = SERVING_SETTINGS + POLICY_SETTINGS + UPLOAD_SETTINGS


def storage_from_settings(config: Mapping[str, Any] | None, prefix: str = "depot.") -> FileStorage:
    """Create the storage that the ``prefix``-ed keys of ``config`` describe."""
    options = {
        k[len(prefix) :]: v
        for k, v in (config or {}).items()
        if k.startswith(prefix) and k[len(prefix) :] not in DEPOT_SETTINGS
    }
    policy = policy_from_settings(config, prefix)
    spec = options.pop("backend", None)
    if spec is None:
        spec = DEFAULT_BACKEND
    backend = load_backend(spec, setting=f"{prefix}backend")
    _check_options(backend, options, prefix)
    try:
        storage = backend(**options)
    except ConfigurationError as exc:
        # The backend names its keyword; say which settings the user should look at.
        raise ConfigurationError(f"{backend.__name__} ({prefix}* settings): {exc}") from exc
    if policy:
        storage.policy = policy
    try:
        keys = parse_keys((config or {}).get(prefix + "signing_keys"), prefix + "signing_keys")
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    if keys:
        storage.signing_keys = keys  # direct uploads sign their tokens with them too
    expiry = (config or {}).get(prefix + "upload_expiry")
    if expiry is not None:
        storage.upload_expiry = _seconds(expiry, prefix + "upload_expiry")
    return storage


def _seconds(value: object, name: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigurationError(
            f"{name} must be a number of seconds above 0 (86400 is a day), not {value!r}."
        )
    return seconds


def policy_from_settings(
    config: Mapping[str, Any] | None, prefix: str = "depot."
) -> tuple[FileValidator, ...]:
    """The checks the ``max_size``, ``allowed_types`` and ``allowed_extensions`` settings give.

    A list setting is a list, or text with its items separated by commas or
    spaces (``image/png, image/jpeg``), as a config file writes it.
    """
    from depot.validators import ContentTypes, Extensions, MaxSize

    config = config or {}
    checks: list[FileValidator] = []
    for name, make in (
        ("max_size", MaxSize),
        ("allowed_types", ContentTypes),
        ("allowed_extensions", Extensions),
    ):
        value = config.get(prefix + name)
        if value is None or value == "":
            continue
        try:
            if name == "max_size":
                checks.append(make(value))
            else:
                checks.append(make(*_as_list(value, prefix + name)))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{prefix}{name}: {exc}") from exc
    return tuple(checks)


def _as_list(value: object, name: str) -> list[str]:
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ConfigurationError(
            f"{name} must be a list of strings, or text separating them with commas, not {value!r}."
        )
    if not items:
        raise ConfigurationError(f"{name} is empty: list at least one, or leave it out.")
    return items


def serving_policy_from_settings(
    config: Mapping[str, Any] | None, prefix: str = "depot."
) -> ServingPolicy:
    """The serving policy the ``prefix``-ed ``private`` and ``signing_keys`` settings give."""
    config = config or {}
    private = as_bool(config.get(prefix + "private", False), prefix + "private")
    try:
        keys = parse_keys(config.get(prefix + "signing_keys"), prefix + "signing_keys")
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    if private and not keys:
        raise ConfigurationError(
            f"{prefix}private = true needs {prefix}signing_keys: the middleware serves a "
            "private depot's files only by signed URLs. Make a key with: python -c "
            '"import secrets; print(secrets.token_urlsafe(32))"'
        )
    return ServingPolicy(private, keys) if (private or keys) else PUBLIC


def load_backend(spec: object, setting: str = "depot.backend") -> type[FileStorage]:
    """Import the storage class that ``spec`` (a short name or dotted path) names."""
    if not isinstance(spec, str) or not spec:
        raise ConfigurationError(f"{setting} must be a backend name, not {spec!r}. {_CHOICES}")
    path = SHORT_NAMES.get(spec, spec)
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise ConfigurationError(f"{setting} = {spec!r} is not a backend. {_CHOICES}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigurationError(
                f"{setting} = {spec!r}: there is no module {missing!r}. {_CHOICES}"
            ) from exc
        raise ImportError(missing_dependency_message(module_name, missing)) from exc
    backend = getattr(module, class_name, None)
    if not isinstance(backend, type):
        found = sorted(
            name
            for name, value in vars(module).items()
            if isinstance(value, type)
            and issubclass(value, FileStorage)
            and value is not FileStorage
        )
        raise ConfigurationError(
            f"{setting} = {spec!r}: module {module_name!r} has no class {class_name!r}"
            f" (storages it has: {', '.join(found) or 'none'})."
        )
    return backend


#: The name depot is published under on PyPI (``depot`` itself is another project's).
DISTRIBUTION = "depot-storage"


def missing_dependency_message(module: str, package: str) -> str:
    """Say which extra installs ``package``, which ``module`` needs."""
    extra = EXTRAS.get(module)
    fix = (
        f"install the '{extra}' extra: pip install '{DISTRIBUTION}[{extra}]'"
        if extra
        else f"install {package}"
    )
    return f"{module} needs the {package!r} package; {fix}."


def as_bool(value: object, name: str) -> bool:
    """Read a yes/no setting, which a config file gives as text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false, not {value!r}.")


def _check_options(backend: type, options: dict[str, Any], prefix: str) -> None:
    params = inspect.signature(backend).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    accepted = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = {p.name for p in accepted}
    valid = ", ".join([prefix + p.name for p in accepted] + [prefix + s for s in DEPOT_SETTINGS])
    for key in options:
        if key not in names:
            raise ConfigurationError(
                f"{prefix}{key} is not a setting of {backend.__name__}; its settings are: {valid}."
            )
    for p in accepted:
        if p.default is p.empty and p.name not in options:
            raise ConfigurationError(f"{backend.__name__} needs the setting {prefix}{p.name}.")


_CHOICES = (
    f"Use one of {', '.join(SHORT_NAMES)}, or the dotted path of a storage class "
    f"such as {DEFAULT_BACKEND!r}."
)
