"""botocore's errors as depot's: one line saying what failed, where, and what to check."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from depot.exceptions import BackendUnavailableError, ConfigurationError, DepotError
from depot.io._foreign import also_foreign

#: Codes by which S3 (and servers that imitate it) refuse the credentials themselves.
_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
    }
)
_DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "403"})
_TRANSIENT = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"})


def client_error_code(exc: BaseException | None) -> str | None:
    """S3's error code (``NoSuchKey``, or the status for a HEAD: ``404``), if ``exc`` has one."""
    if not isinstance(exc, ClientError):
        return None
    return str(exc.response.get("Error", {}).get("Code", "")) or None


@contextlib.contextmanager
def s3_errors(where: str, action: str, passthrough: Collection[str] = ()) -> Iterator[None]:
    """Raise BackendUnavailableError for what botocore raises in the block.

    The error raised is also an instance of botocore's (a ``ClientError``, with
    its ``response``), which filedepot let through: see :mod:`depot.io._foreign`.

    :param where: the bucket and endpoint, as ``S3 bucket 'x' at https://...``.
    :param action: what was being done, as ``reading file <id>``.
    :param passthrough: S3 error codes the caller handles: their ClientError
        goes through unchanged.
    """
    try:
        yield
    except DepotError:
        raise  # translated already, by a block inside this one
    except ClientError as exc:
        code = client_error_code(exc) or ""
        if code in passthrough:
            raise
        raise also_foreign(
            BackendUnavailableError(_refusal(exc, code, where, action)), exc
        ) from exc
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
        message = (
            f"No usable AWS credentials for the {where} while {action}: {_line(exc)}. Set "
            "depot.access_key_id and depot.secret_access_key, or give boto3 credentials "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, a role)."
        )
        raise also_foreign(BackendUnavailableError(message), exc) from exc
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        message = (
            f"The {where} did not answer in time while {action}: {_line(exc)}. Check that "
            "the server is up and depot.endpoint_url; depot.connect_timeout, "
            "depot.read_timeout and depot.max_attempts set how long depot waits."
        )
        raise also_foreign(BackendUnavailableError(message), exc) from exc
    except (ConnectionError, HTTPClientError) as exc:
        message = (
            f"Cannot reach the {where} while {action}: {_line(exc)}. Check that the "
            "server is up and reachable, and depot.endpoint_url."
        )
        raise also_foreign(BackendUnavailableError(message), exc) from exc
    except ParamValidationError as exc:
        message = f"The {where} cannot be used: {_line(exc)}."
        raise also_foreign(ConfigurationError(message), exc) from exc
    except BotoCoreError as exc:
        message = f"S3 failed while {action} in the {where}: {_line(exc)}."
        raise also_foreign(BackendUnavailableError(message), exc) from exc


def describe(exc: ClientError) -> str:
    """S3's code and message, as ``AccessDenied: Access Denied``."""
    code = client_error_code(exc) or "?"
    message = exc.response.get("Error", {}).get("Message")
    return f"{code}: {_line(message)}" if message else code


def _refusal(exc: ClientError, code: str, where: str, action: str) -> str:
    detail = describe(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if code in _BAD_CREDENTIALS:
        return (
            f"S3 refused the credentials ({detail}) while {action} in the {where}. "
            "Check depot.access_key_id and depot.secret_access_key, or the credentials "
            "boto3 found when they are not set."
        )
    if code in _DENIED:
        return (
            f"S3 denied access ({detail}) while {action} in the {where}. Check the "
            "credentials, and that they are allowed s3:GetObject, s3:PutObject, "
            "s3:DeleteObject and s3:ListBucket on the bucket (s3:CreateBucket too if it "
            "does not exist yet)."
        )
    if code == "NoSuchBucket":
        return (
            f"The {where} does not exist (found while {action}). Create it, or check "
            "depot.bucket and depot.endpoint_url."
        )
    if code in _TRANSIENT or status >= 500:
        return f"S3 failed ({detail}) while {action} in the {where}; try again later."
    return f"S3 refused ({detail}) {action} in the {where}."


def _line(value: object) -> str:
    """``value`` as one line of at most 300 characters, for a sentence to go on after."""
    text = " ".join(str(value).split()).rstrip(".") or type(value).__name__
    return text if len(text) <= 300 else text[:297] + "..."
