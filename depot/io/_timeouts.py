"""How long depot waits for a bucket's server: the settings, their defaults, their checks.

A server that accepts connections and never answers must cost the application
a bounded wait, at ``configure()`` (which checks the bucket) and on every
request after: each request waits at most ``connect_timeout`` to connect and
``read_timeout`` for each answer, and is made at most ``max_attempts`` times.
"""

from __future__ import annotations

import math

from depot.exceptions import ConfigurationError

__all__ = ["CONNECT_TIMEOUT", "MAX_ATTEMPTS", "READ_TIMEOUT", "attempts", "seconds"]

#: Seconds to open a connection: a reachable server connects in milliseconds.
CONNECT_TIMEOUT = 5.0
#: Seconds to wait for each answer (each read, not the whole transfer).
READ_TIMEOUT = 15.0
#: Tries of one request, the first included: two retries of a timeout or a 5xx.
MAX_ATTEMPTS = 3
#: The most a setting may say: a day.
_LONGEST = 24 * 3600.0


def seconds(value: object, name: str, default: float) -> float:
    """The ``name`` setting as seconds (a config file gives text), ``default`` when unset."""
    if value is None or value == "":
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not 0 < number <= _LONGEST:
        raise ConfigurationError(
            f"{name} must be a number of seconds above 0 and at most {_LONGEST:.0f}, not {value!r}."
        )
    return number


def attempts(value: object, name: str = "max_attempts") -> int:
    """The ``max_attempts`` setting: how many times a request is tried, at least 1."""
    if value is None or value == "":
        return MAX_ATTEMPTS
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if isinstance(value, bool) or not 1 <= number <= 20:
        raise ConfigurationError(
            f"{name} must be a whole number of tries from 1 to 20 (1: no retries), not {value!r}."
        )
    return number
