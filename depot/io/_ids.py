"""File ids of the backends that name files by UUID (memory, local, S3, GCS)."""

from __future__ import annotations

import os
import re
import uuid

from depot.exceptions import InvalidFileIdError

# The canonical text form only: this is what filedepot and depot generate, and it
# holds no path separator, dot, NUL or anything else a path could be built from.
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EXAMPLE = "0f8fad5b-d9cb-469f-a165-70867728950e"


def new_file_id() -> str:
    """Return a new random id.

    uuid4, not filedepot's uuid1: a uuid1 holds the host's MAC address and the
    creation time, which a public URL would give away.
    """
    # What uuid.uuid4() makes (the same random bits, version and variant), in
    # its text form, without building a UUID: a third of the cost, on every create.
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def check_file_id(file_id: object, backend: str) -> str:
    """Return ``file_id`` as text if it is a well-formed id, else raise InvalidFileIdError.

    A :class:`uuid.UUID` is accepted and returned in its canonical text form:
    applications keep ids in UUID columns. (filedepot's check let a UUID
    through, and then found no file: ``exists()`` was false, ``get()`` raised.)
    """
    if isinstance(file_id, uuid.UUID):
        return str(file_id)
    if isinstance(file_id, str) and _UUID_TEXT.fullmatch(file_id):
        return file_id
    shown = repr(file_id)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    raise InvalidFileIdError(
        f"Invalid file id {shown}: {backend} file ids are lowercase UUIDs such as "
        f"{_EXAMPLE!r}; pass the id that create() returned."
    )
