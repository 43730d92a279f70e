"""Who may read a file: the depot's signed-URL policy, then the application's ``authorize``.

Decided before the file is looked up, from the URL and the request alone, so
that a refusal (403) says nothing of whether the file exists.

- A URL carrying a valid signature is served: the application that signed it
  granted it (``DepotManager.url_for(path, expires_in=...)``).
- A URL carrying a signature that is not valid (expired, tampered, signed
  with a key no longer configured) is refused on every depot: a link that
  says it has expired must not work.
- A URL without one is served by a public depot, and by a private depot
  (``depot.private = true``) only when ``authorize`` allows it; when
  ``authorize`` is given, it decides for public depots too.

An answer that depended on who asked (a private depot, or ``authorize``
consulted) is sent with ``Cache-Control: private``: a shared cache must not
hand it to someone else. A signed answer is cached no longer than its URL
lives.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from depot.http.options import ServeOptions
    from depot.http.request import RequestFacts
    from depot.http.serve import Route

__all__ = ["Access", "check_access"]

log = logging.getLogger("depot.middleware")


class Access:
    """The verdict on one request.

    :ivar allowed: serve it (else 403).
    :ivar failed: ``authorize`` raised (503, logged).
    :ivar private: the answer depends on who asked: ``Cache-Control: private``.
    :ivar max_age: the longest a client may cache it (a signed URL's life left),
        or None for the front end's ``cache_max_age``.
    """

    __slots__ = ("allowed", "failed", "max_age", "private")

    def __init__(
        self, allowed: bool, private: bool = False, max_age: int | None = None, failed: bool = False
    ) -> None:
        self.allowed = allowed
        self.private = private
        self.max_age = max_age
        self.failed = failed

    def cache_age(self, cache_max_age: int) -> int:
        """The max-age to send: the front end's, shortened to the signed URL's life left."""
        return cache_max_age if self.max_age is None else min(cache_max_age, self.max_age)


#: A public depot's file, no signature, no authorize: the common case.
PUBLIC = Access(True)


def needs_authorize(request: RequestFacts, found: Route, options: ServeOptions) -> bool:
    """Whether ``authorize`` must be asked (no valid or invalid signature decides first)."""
    if options.authorize is None:
        return False
    verdict = _signature(request, found, time.time())
    return verdict is None


def check_access(
    request: RequestFacts,
    found: Route,
    options: ServeOptions,
    authorized: bool | None = None,
    now: float | None = None,
) -> Access:
    """Decide whether ``request`` may read the file ``found`` names.

    :param authorized: the verdict of an ``async`` authorize the ASGI front
        end awaited already; None to call ``options.authorize`` here (it may
        block: this runs where storage I/O may run).
    """
    policy = found.policy
    if not (request.query_string or policy.private or options.authorize):
        return PUBLIC
    moment = time.time() if now is None else now
    signed = _signature(request, found, moment)
    if signed is not None:
        allowed, expires_at = signed
        if not allowed:
            return Access(False, private=True)
        return Access(True, private=policy.private, max_age=max(0, int(expires_at - moment)))
    if options.authorize is None:
        return Access(not policy.private, private=policy.private)
    if authorized is None:
        try:
            authorized = bool(options.authorize(request, found.name, found.file_id))
        except Exception:  # the application's code: fail closed, and say why in the log
            log.exception("authorize(%r, %r) failed", found.name, found.file_id)
            return Access(False, private=True, failed=True)
    return Access(authorized, private=True)


def _signature(request: RequestFacts, found: Route, now: float) -> tuple[bool, float] | None:
    """None without a signature; else (valid, expires at)."""
    from depot.http import signing

    if not request.query_string:
        return None
    verdict = signing.check_signature(
        found.policy.keys, found.depot_name, found.file_id, request.query_string, now
    )
    if verdict.absent:
        return None
    return verdict.valid, float(verdict.expires_at or 0)
