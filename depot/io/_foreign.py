"""depot's errors that are also the library error they stand for.

filedepot 0.12 let the errors of boto3, pymongo and google-cloud-storage
through, and applications catch them by those classes (``except
botocore.exceptions.ClientError``, ``except pymongo.errors.ConnectionFailure``).
depot raises its own errors instead, with a message that says what to do; each
is made an instance of the original's class too, so those clauses keep working,
and it carries the original's attributes (a ``ClientError``'s ``response`` and
``operation_name``, a ``GoogleAPICallError``'s ``code`` and ``errors``...).
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from depot.exceptions import DepotError

__all__ = ["also_foreign"]

_Error = TypeVar("_Error", bound=DepotError)


def also_foreign(error: _Error, original: BaseException) -> _Error:
    """``error``, made an instance of ``type(original)`` as well; raise it ``from original``.

    Its ``str()`` is ``error``'s message; it has the original's attributes,
    and ``error``'s own (a ``file_id``) over them.
    """
    state = {**getattr(original, "__dict__", {}), **vars(error)}
    return _rebuild(type(error), type(original), error.args, state)


#: The classes made, one per pair: errors of one kind share a type. Bounded:
#: botocore makes its error classes (``NoSuchBucket``) anew for each session.
_MADE: dict[tuple[type[BaseException], type[BaseException]], type[Any]] = {}
_MAX_MADE = 256


def _combined_class(error_class: type[DepotError], foreign: type[BaseException]) -> type[Any]:
    """``error_class`` and ``foreign`` as one class, made once per pair; named as depot's."""
    made = _MADE.get((error_class, foreign))
    if made is None:
        if len(_MADE) >= _MAX_MADE:
            _MADE.clear()
        made = _MADE.setdefault((error_class, foreign), _make_class(error_class, foreign))
    return made


def _make_class(error_class: type[DepotError], foreign: type[BaseException]) -> type[Any]:
    if issubclass(error_class, foreign):
        return error_class
    namespace = {
        "__module__": error_class.__module__,
        "__qualname__": error_class.__qualname__,
        "__doc__": error_class.__doc__,
        # depot's message, not the one the foreign class would format.
        "__str__": BaseException.__str__,
        "__reduce__": _reduce,
    }
    try:
        return type(error_class.__name__, (error_class, foreign), namespace)
    except TypeError:
        # Two classes whose instances cannot be laid out as one (C types).
        return error_class


def _reduce(self: BaseException) -> tuple[Any, ...]:
    # The combined class cannot be pickled by name: rebuild it from its two parts.
    depot_class, foreign = type(self).__bases__
    return (_rebuild, (depot_class, _by_name(foreign), self.args, dict(vars(self))))


def _by_name(cls: type[BaseException]) -> type[BaseException]:
    """``cls``, or its nearest base that pickle can find by name.

    botocore makes a class per S3 error code (``NoSuchBucket``) that no module holds;
    its ``ClientError`` base is what gets pickled then.
    """
    for base in cls.__mro__:
        module = sys.modules.get(base.__module__)
        if getattr(module, base.__qualname__, None) is base:
            return base
    return Exception


def _rebuild(
    error_class: type[_Error],
    foreign: type[BaseException],
    args: tuple[Any, ...],
    state: dict[str, Any],
) -> _Error:
    combined = _combined_class(error_class, foreign)
    error: _Error = combined.__new__(combined, *args)
    # Not the classes' __init__: each wants other arguments (a ClientError its
    # response, a StoredFileNotFoundError its id), and the state is all here.
    BaseException.__init__(error, *args)
    vars(error).update(state)
    return error
