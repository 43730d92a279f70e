"""google-cloud-storage's errors as depot's: one line saying what failed, where, what to check."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth

from depot.exceptions import BackendUnavailableError, DepotError
from depot.io._foreign import also_foreign

#: What a storage's client raises: HTTP errors, credential errors, network errors.
_TRANSLATED = (api.GoogleAPIError, auth.GoogleAuthError, requests.RequestException)
# The "GET https://...: " that google-cloud-storage puts before GCS's own message.
_REQUEST_PREFIX = re.compile(r"^[A-Z]+ \S+: ")
_ERRNO = re.compile(r"\[Errno -?\d+\][^'\"()]*")


@contextlib.contextmanager
def gcs_errors(
    where: str, action: str, passthrough: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Raise BackendUnavailableError for what google-cloud-storage raises in the block.

    The error raised is also an instance of the library's (a ``Forbidden``, with
    its ``code`` and ``errors``), which filedepot let through: see
    :mod:`depot.io._foreign`.

    :param where: the bucket and endpoint, as ``GCS bucket 'x' at https://...``.
    :param action: what was being done, as ``reading file <id>``.
    :param passthrough: errors the caller handles (``NotFound`` for a missing
        object): they go through unchanged.
    """
    try:
        yield
    except passthrough:
        raise
    except DepotError:
        raise  # translated already, by a block inside this one
    except _TRANSLATED as exc:
        cause: BaseException = exc
        if isinstance(exc, api.RetryError) and exc.cause is not None:
            # Retries ran out: what went wrong is the last attempt's error.
            cause = exc.cause
        error = BackendUnavailableError(_sentence(cause, where, action))
        raise also_foreign(error, exc) from exc


def describe(exc: BaseException) -> str:
    """GCS's status and message, as ``403 Forbidden: x has no storage.objects.get access``."""
    if isinstance(exc, api.GoogleAPICallError):
        message = _api_message(exc) or _REQUEST_PREFIX.sub("", str(exc.message))
        return f"{exc.code} {_line(message)}" if exc.code else _line(message)
    if isinstance(exc, auth.GoogleAuthError) and exc.args and isinstance(exc.args[0], str):
        return _line(exc.args[0])  # not the tuple of the message and the server's answer
    return _line(exc)


def _sentence(exc: BaseException, where: str, action: str) -> str:
    detail = describe(exc)
    if isinstance(exc, requests.Timeout):
        return (
            f"The {where} did not answer in time while {action}: {detail}. Check that the "
            "server is up (and STORAGE_EMULATOR_HOST, if it is set); depot.connect_timeout, "
            "depot.read_timeout and depot.retry_timeout set how long depot waits."
        )
    if isinstance(exc, (requests.ConnectionError, auth.TransportError)):
        return (
            f"Cannot reach the {where} while {action}: {detail}. Check that the server is up "
            "and reachable (and STORAGE_EMULATOR_HOST, if it is set)."
        )
    if isinstance(exc, (api.Unauthorized, auth.RefreshError)):
        return (
            f"GCS refused the credentials ({detail}) while {action} in the {where}. "
            "Check depot.credentials, or the credentials Google's libraries found when it "
            "is not set (GOOGLE_APPLICATION_CREDENTIALS, gcloud, the instance's account)."
        )
    if isinstance(exc, api.Forbidden):
        return (
            f"GCS denied access ({detail}) while {action} in the {where}. Check that the "
            "credentials may read, write, delete and list its objects (the role "
            "roles/storage.objectAdmin on the bucket)."
        )
    if isinstance(exc, api.NotFound):
        return (
            f"The {where} does not exist (found while {action}). Create it, or check "
            "depot.bucket and depot.project_id."
        )
    if isinstance(exc, (api.TooManyRequests, api.ServerError)):
        return f"GCS failed ({detail}) while {action} in the {where}; try again later."
    if isinstance(exc, api.GoogleAPICallError):
        return f"GCS refused ({detail}) {action} in the {where}."
    return f"GCS failed while {action} in the {where}: {detail}."


def _api_message(exc: api.GoogleAPICallError) -> str | None:
    """The ``error.message`` of GCS's JSON answer, when the exception kept the response."""
    response = getattr(exc, "response", None)
    try:
        message = response.json()["error"]["message"]  # type: ignore[union-attr]
    except (AttributeError, ValueError, KeyError, TypeError):
        return None
    return str(message) if message else None


def _line(value: object) -> str:
    """``value`` as one line of at most 300 characters, for a sentence to go on after."""
    text = " ".join(str(value).split()).rstrip(".") or type(value).__name__
    # requests wraps the system's reason ("[Errno 111] Connection refused") in
    # two layers of urllib3 objects: the reason is what the reader needs.
    reason = _ERRNO.search(text)
    if reason and isinstance(value, requests.ConnectionError):
        return reason.group().rstrip(".")
    return text if len(text) <= 300 else text[:299].rstrip(" .") + "\u2026"
