"""Container images whose directory lies about the pictures inside, made with struct.

Each is small on disk and declares small pictures, while a picture inside says
(in its own header) that it is huge: what decoding would allocate.
"""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def real_png(width: int, height: int) -> bytes:
    """A complete, valid RGBA PNG of ``width`` x ``height`` transparent pixels.

    Compressed row by row, so making a 9000 x 9000 one takes little memory.
    """
    row = b"\0" * (1 + 4 * width)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    )


def dib(width: int, height: int, bpp: int = 32) -> bytes:
    """A BMP picture as an ICO holds it (no file header; twice the height, for the mask),
    with only its header: the pixels that would fill it are missing."""
    return struct.pack("<IiiHHIIiiII", 40, width, height * 2, 1, bpp, 0, 0, 0, 0, 0, 0)


def ico(*pictures: tuple[int, int, bytes]) -> bytes:
    """An ICO whose directory declares each ``(width, height, data)`` as that size."""
    header = struct.pack("<HHH", 0, 1, len(pictures))
    offset = len(header) + 16 * len(pictures)
    entries, bodies = [], []
    for width, height, data in pictures:
        entries.append(
            struct.pack("<BBBBHHII", width % 256, height % 256, 0, 0, 1, 32, len(data), offset)
        )
        bodies.append(data)
        offset += len(data)
    return header + b"".join(entries) + b"".join(bodies)


def icns(kind: bytes, data: bytes) -> bytes:
    """An ICNS holding one icon of type ``kind`` (``b'ic09'``: 512 x 512) made of ``data``."""
    body = kind + struct.pack(">I", 8 + len(data)) + data
    return b"icns" + struct.pack(">I", 8 + len(body)) + body
