"""The page's one third-party script, tus-js-client: fetched from npm, checked, cached, served.

The repository holds no copy of it and the app needs no Node. At start-up the
app looks for the package's tarball, as npm publishes it, in its cache
directory (``FILEBOX_CACHE``); if it is not there, it asks the npm registry
(``FILEBOX_NPM_REGISTRY``) for the pinned :data:`VERSION` and downloads it.
Either way the tarball must have the pinned :data:`INTEGRITY`, the SHA-512
hash npm records for it (``dist.integrity``): a tarball with any other bytes is
never served, whatever the registry says. The files the page needs are read
from it in memory (nothing is unpacked to disk) and the app serves them at
:func:`url`, so the browser loads nothing from another site.

When the tarball can be neither found nor fetched, :func:`load` raises
:class:`AssetUnavailable`, whose message says why and what to do; the app then
works without resumable uploads and shows that message.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "INTEGRITY",
    "PACKAGE",
    "VERSION",
    "AssetUnavailable",
    "Bundle",
    "load",
    "tarball_name",
]

PACKAGE = "tus-js-client"
VERSION = "4.3.1"
#: ``dist.integrity`` of tus-js-client 4.3.1 on registry.npmjs.org, pinned here so
#: that the bytes served are the ones published, not whatever a registry or a
#: mirror sends today. Changing VERSION means changing this with it.
INTEGRITY = (
    "sha512-"
    "ZLeYmjrkaU1fUsKbIi8JML52uAocjEZtBx4DKjRrqzrZa0O4MYwT6db+oqePlspV+FxXJAyFBc/L5gwUi2OFsg=="
)
#: The files served, by the name in their URL, and where each is in the tarball.
FILES = {
    "tus.min.js": "package/dist/tus.min.js",
    "tus.min.js.map": "package/dist/tus.min.js.map",
    "LICENSE": "package/LICENSE",
}
#: Their types, by the name's ending.
TYPES = {".js": "text/javascript", ".map": "application/json", "": "text/plain"}
#: The tarball is half a megabyte; a registry sending far more is not sending it.
MAX_TARBALL = 8 * 1024 * 1024
#: Seconds to wait for the registry, per request: start-up waits this long at most twice.
TIMEOUT = 5.0
#: Seconds a failed fetch is not tried again in the same process: an app made
#: again and again (tests) offline waits for the registry once, not each time.
RETRY_AFTER = 60.0

_failures: dict[tuple[str, str], tuple[float, AssetUnavailable]] = {}


class AssetUnavailable(Exception):
    """tus-js-client could not be found in the cache nor fetched from the registry."""


@dataclass(frozen=True)
class Bundle:
    """The files of the package the app serves, read from its checked tarball."""

    files: dict[str, bytes]
    #: Where the tarball is kept, or ``None`` when the cache could not be written.
    cached: Path | None

    @staticmethod
    def url(name: str) -> str:
        """The URL of the file ``name`` (a key of :data:`FILES`), versioned: cached for good."""
        return f"/assets/{PACKAGE}-{VERSION}/{name}"

    @staticmethod
    def content_type(name: str) -> str:
        return TYPES[Path(name).suffix]


def tarball_name() -> str:
    """The tarball's name in the cache, the one ``npm pack tus-js-client@<VERSION>`` writes."""
    return f"{PACKAGE}-{VERSION}.tgz"


def load(cache_dir: Path, registry: str, timeout: float = TIMEOUT) -> Bundle:
    """The bundle, from the tarball in ``cache_dir``, else from ``registry`` (then cached).

    A cached tarball that does not have :data:`INTEGRITY` (cut short, edited)
    is fetched again and replaced.

    :raises AssetUnavailable: neither worked; the message says why and what to do.
    """
    path = cache_dir / tarball_name()
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if data and _integrity(data) == INTEGRITY:
        return Bundle(_unpack(data), path)
    key = (str(path), registry)
    failed = _failures.get(key)
    if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER:
        raise failed[1]
    try:
        data = _download(registry, timeout, path)
    except AssetUnavailable as exc:
        _failures[key] = (time.monotonic(), exc)
        raise
    _failures.pop(key, None)
    try:
        _write_atomically(path, data)
    except OSError:
        # Served from memory all the same; the next start fetches it again.
        return Bundle(_unpack(data), None)
    return Bundle(_unpack(data), path)


def _download(registry: str, timeout: float, path: Path) -> bytes:
    base = registry.rstrip("/")
    where = f"{PACKAGE} {VERSION} from {base}"
    fix = (
        f"Restart the app when the registry can be reached (FILEBOX_NPM_REGISTRY names "
        f"another one), or put the package's tarball (npm pack {PACKAGE}@{VERSION}) at {path}."
    )
    if not base.startswith(("https://", "http://")):
        raise AssetUnavailable(
            f"Could not fetch {where}: FILEBOX_NPM_REGISTRY must be an http(s) URL. {fix}"
        )
    try:
        document = json.loads(_get(f"{base}/{PACKAGE}/{VERSION}", timeout, 1024 * 1024))
        dist = document["dist"]
        listed, tarball = dist["integrity"], dist["tarball"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AssetUnavailable(
            f"Could not fetch {where}: its answer does not describe the package ({exc!r}). {fix}"
        ) from exc
    except _Failed as exc:
        raise AssetUnavailable(f"Could not fetch {where}: {exc}. {fix}") from exc
    if listed != INTEGRITY:
        raise AssetUnavailable(
            f"Refused {where}: the registry lists the integrity {listed!r}, not the "
            f"{INTEGRITY!r} published on registry.npmjs.org. {fix}"
        )
    if not isinstance(tarball, str) or not tarball.startswith(("https://", "http://")):
        raise AssetUnavailable(f"Could not fetch {where}: no http(s) tarball URL. {fix}")
    try:
        data = _get(tarball, timeout, MAX_TARBALL)
    except _Failed as exc:
        raise AssetUnavailable(f"Could not fetch {where}: {exc}. {fix}") from exc
    if _integrity(data) != INTEGRITY:
        raise AssetUnavailable(
            f"Refused {where}: the tarball at {tarball} does not have the published "
            f"integrity {INTEGRITY}. {fix}"
        )
    return data


class _Failed(Exception):
    """A request to the registry failed; the message says how, for a sentence."""


def _get(url: str, timeout: float, limit: int) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json, */*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise _Failed(f"{url} answered {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _Failed(f"{url} cannot be reached ({exc.reason})") from exc
    except (OSError, ValueError) as exc:  # a timeout while reading, a malformed URL
        raise _Failed(f"{url} failed ({exc})") from exc
    if len(data) > limit:
        raise _Failed(f"{url} sent more than {limit} bytes")
    return data


def _integrity(data: bytes) -> str:
    """The Subresource-Integrity form of ``data``'s SHA-512, as npm writes it."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def _unpack(data: bytes) -> dict[str, bytes]:
    files = {}
    # The tarball has the pinned hash: these reads cannot fail but on a wrong
    # FILES entry, which is this module's bug, not the user's.
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for name, member in FILES.items():
            extracted = archive.extractfile(member)
            assert extracted is not None, f"{member} is not a file of {PACKAGE} {VERSION}"
            files[name] = extracted.read()
    return files


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two apps starting at once each write their own file; either rename leaves a whole one.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        raise
