"""DepotManager: the process-wide registry of named depots.

An application configures its depots once at start-up, from flat settings as
read from its config file::

    DepotManager.configure('default', {'depot.storage_path': '/var/files'})
    DepotManager.configure('media', {'media.backend': 's3', ...}, prefix='media.')

and from then on reaches them by name: ``DepotManager.get('media')``,
``DepotManager.get_file('media/<file id>')``. The first depot configured is the
default one; switching the default (``set_default``) sends new files to another
depot while the files already stored keep being served from where they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from depot._settings import serving_policy_from_settings, storage_from_settings
from depot.exceptions import ConfigurationError, InvalidFileIdError, UnknownDepotError
from depot.http.signing import PUBLIC, ServingPolicy, sign_query
from depot.io.interfaces import FileStorage, StoredFile

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from depot.asgi import DepotASGIMiddleware
    from depot.middleware import DepotMiddleware

__all__ = ["DepotManager", "configure", "get_depot", "get_file", "set_default"]

log = logging.getLogger(__name__)


class DepotManager:
    """Holds the depots of the application, its default depot and its middleware."""

    _default_depot: ClassVar[str | None] = None
    _depots: ClassVar[dict[str, FileStorage]] = {}
    _middleware: ClassVar[Any] = None
    _aliases: ClassVar[dict[str, str]] = {}
    _policies: ClassVar[dict[str, ServingPolicy]] = {}

    @classmethod
    def configure(
        cls, name: str, config: Mapping[str, Any] | None, prefix: str = "depot."
    ) -> FileStorage:
        """Create the depot ``name`` from settings; the first one becomes the default.

        :param name: the depot's name, the first part of its files' paths.
        :param config: flat settings; only the keys that start with ``prefix``
            are read. ``<prefix>backend`` names the storage (a short name:
            ``local``, ``memory``, ``s3``, ``gridfs``, ``gcs``, or a dotted path;
            default: local), and every other ``<prefix>key`` is passed to it as
            the keyword argument ``key``.
        :param prefix: the prefix of this depot's settings.
        :raises depot.exceptions.ConfigurationError: ``name`` is configured
            already, or a setting is unknown, missing or wrong.
        """
        if name in cls._depots:
            raise ConfigurationError(
                f"Depot {name!r} has already been configured. Configure each name once, "
                "or call DepotManager.reset() first in test suites."
            )
        policy = serving_policy_from_settings(config, prefix)
        depot = cls.from_config(config, prefix)
        cls._depots[name] = depot
        cls._policies[name] = policy
        if cls._default_depot is None:
            cls._default_depot = name
        return depot

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, prefix: str = "depot.") -> FileStorage:
        """Create a storage from settings, as :meth:`configure` does, without registering it."""
        return storage_from_settings(config, prefix)

    @classmethod
    def get(cls, name: str | None = None) -> FileStorage | None:
        """Return the depot ``name`` (or an alias of it), the default one if ``name`` is None.

        Returns ``None`` when no such depot is configured, as filedepot did.
        """
        resolved = cls.resolve_alias(cls._default_depot if name is None else name)
        return cls._depots.get(resolved) if resolved is not None else None

    @classmethod
    def get_default(cls) -> str:
        """Return the name of the default depot."""
        if cls._default_depot is None:
            raise ConfigurationError(
                "No depots have been configured! Call DepotManager.configure(name, settings) first."
            )
        return cls._default_depot

    @classmethod
    def set_default(cls, name: str) -> None:
        """Make ``name`` the default depot, where new files go."""
        if name not in cls._depots:
            raise UnknownDepotError(
                f"set_default({name!r}): no such depot ({cls._configured()}). "
                f"Call DepotManager.configure({name!r}, settings) first."
            )
        cls._default_depot = name

    @classmethod
    def alias(cls, alias: str, name: str) -> None:
        """Let ``alias`` stand for the depot ``name``.

        Files stored under a depot name keep that name in their paths; an alias
        keeps those paths working after the depot behind them is renamed.
        """
        if name not in cls._depots:
            raise UnknownDepotError(
                f"alias({alias!r}, {name!r}): no depot named {name!r} ({cls._configured()}); "
                "you can only alias a configured depot."
            )
        if alias in cls._depots:
            raise ConfigurationError(
                f"alias({alias!r}, {name!r}): {alias!r} is the name of a configured depot; "
                "an alias cannot hide it, or its files would resolve to another depot."
            )
        cls._aliases[alias] = name

    @classmethod
    def resolve_alias(cls, name: str | None) -> str | None:
        """Return the depot name that ``name`` stands for (itself if it is not an alias)."""
        if name in cls._depots:  # no alias: the common case, once or more per request
            return name
        seen = set()
        while name is not None and name not in cls._depots and name not in seen:
            seen.add(name)
            name = cls._aliases.get(name)
        return name if name in cls._depots else None

    @classmethod
    def get_file(cls, path: str) -> StoredFile:
        """Open the file at ``path``, which is ``'<depot name>/<file id>'``."""
        depot_name, file_id = cls._split_path(path)
        return cls._depots[cls._require(depot_name, f"get_file({path!r})")].get(file_id)

    @classmethod
    def serving_policy(cls, name: str) -> ServingPolicy:
        """How the depot ``name`` (or the depot an alias stands for) is served.

        Its ``private`` and ``signing_keys`` settings; a name that is not
        configured has the public policy without keys.

        .. versionadded:: 1.0
        """
        resolved = cls.resolve_alias(name)
        return PUBLIC if resolved is None else cls._policies.get(resolved, PUBLIC)

    @classmethod
    def url_for(cls, path: str, expires_in: int | None = None) -> str:
        """Return the URL where the middleware serves ``'<depot name>/<file id>'``.

        :param expires_in: seconds the URL stays valid: the URL is signed with
            the depot's first ``signing_keys`` key, and works for that long,
            even on a private depot (``depot.private = true``). Without it, the
            plain URL, which a private depot refuses (403) unless the
            middleware's ``authorize`` allows the request.
        :raises depot.exceptions.ConfigurationError: ``expires_in`` for a depot
            without signing keys.

        .. versionchanged:: 1.0
           ``expires_in`` added.
        """
        depot_name, file_id = cls._split_path(path)
        url: str = cls.get_middleware().url_for(path)
        if expires_in is None:
            return url
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            raise ValueError(
                f"url_for({path!r}): expires_in must be a number of seconds above 0, "
                f"not {expires_in!r}."
            )
        keys = cls.serving_policy(depot_name).keys
        if not keys:
            raise ConfigurationError(
                f"url_for({path!r}, expires_in=...): depot {depot_name!r} has no signing keys. "
                "Set depot.signing_keys (make a key with: python -c "
                '"import secrets; print(secrets.token_urlsafe(32))").'
            )
        query = sign_query(keys, depot_name, file_id, int(time.time()) + expires_in)
        return f"{url}?{query}"

    @classmethod
    def make_middleware(cls, app: WSGIApplication, **options: Any) -> DepotMiddleware:
        """Wrap ``app`` in the :class:`~depot.middleware.DepotMiddleware` that serves the files.

        :param options: passed to :class:`~depot.middleware.DepotMiddleware`.
        """
        from depot.middleware import DepotMiddleware

        middleware = DepotMiddleware(app, **options)
        cls.set_middleware(middleware)
        return middleware

    @classmethod
    def make_asgi_middleware(cls, app: Any, **options: Any) -> DepotASGIMiddleware:
        """Wrap the ASGI ``app`` in the :class:`~depot.asgi.DepotASGIMiddleware` serving the files.

        :param options: passed to :class:`~depot.asgi.DepotASGIMiddleware`
            (the options of :class:`~depot.middleware.DepotMiddleware`).

        .. versionadded:: 1.0
        """
        from depot.asgi import DepotASGIMiddleware

        middleware = DepotASGIMiddleware(app, **options)
        cls.set_middleware(middleware)
        return middleware

    @classmethod
    def set_middleware(cls, mw: Any) -> None:
        """Register the middleware that :meth:`url_for` builds URLs for."""
        if cls._middleware is not None:
            raise ConfigurationError(
                "There is already a WSGI middleware registered (or an ASGI one): "
                "make_middleware() or make_asgi_middleware() is called once per process "
                "(DepotManager.reset() forgets it, in tests)."
            )
        cls._middleware = mw

    @classmethod
    def get_middleware(cls) -> Any:
        """Return the registered middleware."""
        if cls._middleware is None:
            raise ConfigurationError(
                "No WSGI middleware currently registered (nor an ASGI one): wrap your "
                "application with DepotManager.make_middleware(app), or an ASGI one with "
                "DepotManager.make_asgi_middleware(app), first."
            )
        return cls._middleware

    @classmethod
    def reset(cls) -> None:
        """Forget every depot, alias and the middleware, as if none had been configured.

        For test suites: call it between tests (a fixture, ``setUp``) so that each
        test configures the depots it needs. Files already stored stay where they
        are. Each forgotten depot is closed (:meth:`FileStorage.close()
        <depot.io.interfaces.FileStorage.close>`: a GridFS depot's MongoDB
        connections are released); a close that fails is logged as a warning on
        the ``depot.manager`` logger, never raised.

        .. versionadded:: 1.0
           filedepot's name for it, ``_clear()``, keeps working.
        """
        forgotten = list({id(depot): depot for depot in cls._depots.values()}.values())
        cls._default_depot = None
        cls._depots = {}
        cls._middleware = None
        cls._aliases = {}
        cls._policies = {}
        for depot in forgotten:
            try:
                depot.close()
            except Exception:  # any backend's failure: reset() must still finish
                log.warning("Closing depot %r failed", depot, exc_info=True)

    @classmethod
    def _clear(cls) -> None:
        """filedepot's name for :meth:`reset`, which its test suites call."""
        cls.reset()

    @classmethod
    def _require(cls, name: str | None, action: str) -> str:
        """Resolve ``name`` (the default depot if ``None``), or say why ``action`` cannot run."""
        resolved = cls.resolve_alias(cls.get_default() if name is None else name)
        if resolved is None:
            raise UnknownDepotError(
                f"{action}: no depot named {name!r} ({cls._configured()}). "
                f"Call DepotManager.configure({name!r}, settings) first."
            )
        return resolved

    @classmethod
    def _configured(cls) -> str:
        names = ", ".join(repr(n) for n in cls._depots)
        return f"configured: {names}" if names else "none is configured"

    @staticmethod
    def _split_path(path: str) -> tuple[str, str]:
        depot_name, sep, file_id = path.partition("/") if isinstance(path, str) else ("", "", "")
        if not (sep and depot_name and file_id):
            raise InvalidFileIdError(
                f"{path!r} is not a file path: expected '<depot name>/<file id>', "
                "as stored in UploadedFile['path']."
            )
        return depot_name, file_id


get_depot = DepotManager.get
get_file = DepotManager.get_file
configure = DepotManager.configure
set_default = DepotManager.set_default
