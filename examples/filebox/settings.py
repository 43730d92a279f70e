"""The example apps' settings: environment variables, with defaults that need no server.

Every variable is optional:

======================  =============================================  =====================
Variable                What it sets                                   Default
======================  =============================================  =====================
FILEBOX_HOST            the address to listen on                       127.0.0.1
FILEBOX_PORT            the port to listen on (0: any free port)       8080
FILEBOX_DATA            the directory of the database and local files  examples/data
FILEBOX_DATABASE_URL    the SQLAlchemy URL of the database             SQLite in FILEBOX_DATA
FILEBOX_MAX_UPLOAD_MB   the files' bytes one upload may hold, in MiB   1024
FILEBOX_CACHE           where downloaded scripts are kept              ~/.cache/depot-filebox
                        (tus-js-client's tarball, see filebox.assets)  (under $XDG_CACHE_HOME)
FILEBOX_NPM_REGISTRY    the npm registry tus-js-client comes from      https://registry.npmjs.org
DEPOT_BACKEND           where files go: ``local`` or ``s3``            local
DEPOT_STORAGE_PATH      local: the directory of the files              FILEBOX_DATA/files
DEPOT_S3_BUCKET         s3: the bucket (created if missing)            (required)
DEPOT_S3_PREFIX         s3: a key prefix for the files                 none
DEPOT_S3_PRESIGN_TTL    s3: send downloads to signed URLs valid this   none: the app sends
                        many seconds                                   the bytes itself
======================  =============================================  =====================

With ``DEPOT_BACKEND=s3``, boto3 finds the credentials, region and endpoint
where it always does: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` (for MinIO or another S3), or
``~/.aws``. Files are stored private, so every download goes through the app
(or a signed URL) and gets depot's safe headers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEPOT_NAME", "Settings", "from_env"]

#: The depot the apps store files in: the first part of each stored path.
DEPOT_NAME = "filebox"

EXAMPLES = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    """Everything the apps read from the environment, checked."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = EXAMPLES / "data"
    database_url: str = ""
    #: The bytes of files one upload may hold; ``filebox.limits`` derives the
    #: servers' limits from it.
    max_upload: int = 1024 * 1024 * 1024
    #: depot settings (``depot.backend`` and its options) for DepotManager.configure.
    depot: dict[str, str] = field(default_factory=dict)
    #: Where the page's downloaded script is kept (:mod:`filebox.assets`).
    cache_dir: Path = field(default_factory=lambda: _cache_dir({}, EXAMPLES / "data"))
    #: The npm registry it is fetched from when it is not in the cache.
    npm_registry: str = "https://registry.npmjs.org"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


def from_env(environ: Mapping[str, str] = os.environ) -> Settings:
    """Read the settings from ``environ``.

    :raises ValueError: a variable has a wrong value; the message names it and
        says what to set.
    """
    data_dir = Path(environ.get("FILEBOX_DATA") or EXAMPLES / "data").resolve()
    database_url = environ.get("FILEBOX_DATABASE_URL") or f"sqlite:///{data_dir / 'filebox.sqlite'}"
    return Settings(
        host=environ.get("FILEBOX_HOST") or "127.0.0.1",
        port=_number(environ, "FILEBOX_PORT", 8080, "a port number such as 8080"),
        data_dir=data_dir,
        database_url=database_url,
        max_upload=_number(environ, "FILEBOX_MAX_UPLOAD_MB", 1024, "a size in MiB") * 1024**2,
        depot=_depot_settings(environ, data_dir),
        cache_dir=_cache_dir(environ, data_dir),
        npm_registry=environ.get("FILEBOX_NPM_REGISTRY") or "https://registry.npmjs.org",
    )


def _cache_dir(environ: Mapping[str, str], data_dir: Path) -> Path:
    if environ.get("FILEBOX_CACHE"):
        return Path(environ["FILEBOX_CACHE"]).resolve()
    # One cache for every data directory (and every test's): the script is
    # fetched once per machine, not once per app.
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]) / "depot-filebox"
    try:
        return Path.home() / ".cache" / "depot-filebox"
    except RuntimeError:  # no home directory (a service account)
        return data_dir / "cache"


def _depot_settings(environ: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    backend = environ.get("DEPOT_BACKEND") or "local"
    if backend == "local":
        path = environ.get("DEPOT_STORAGE_PATH") or str(data_dir / "files")
        return {"depot.backend": "local", "depot.storage_path": path}
    if backend == "s3":
        bucket = environ.get("DEPOT_S3_BUCKET")
        if not bucket:
            raise ValueError(
                "DEPOT_BACKEND=s3 needs DEPOT_S3_BUCKET, the bucket to store files in "
                "(it is created if missing)."
            )
        settings = {"depot.backend": "s3", "depot.bucket": bucket, "depot.policy": "private"}
        for variable, key in (
            ("DEPOT_S3_PREFIX", "prefix"),
            ("DEPOT_S3_PRESIGN_TTL", "presign_ttl"),
        ):
            if environ.get(variable):
                settings[f"depot.{key}"] = environ[variable]
        return settings
    raise ValueError(f"DEPOT_BACKEND must be 'local' or 's3', not {backend!r}.")


def _number(environ: Mapping[str, str], variable: str, default: int, what: str) -> int:
    value = environ.get(variable)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(f"{variable} must be {what}, not {value!r}.")
    return number
