"""Filters that store thumbnails of an image next to it (need Pillow).

:class:`WithThumbnailFilter` is filedepot 0.12's, with the same keys;
:class:`WithThumbnailsFilter` stores several named sizes at once::

    class Photo(Base):
        image = Column(UploadedFileField(filters=[
            WithThumbnailsFilter({'small': (64, 64), 'large': (512, 512)}),
        ]))

    photo.image.small_url, photo.image.large_file

Every thumbnail is shrunk to fit its box (never enlarged), turned upright as
its EXIF orientation says, converted to sRGB, and written without EXIF, GPS,
XMP, ICC profile, comments or text chunks. The stored file is decoded once for
all sizes.

A filter runs after its field stored the file: a file that is not an image, is
damaged or has too many pixels makes the filter raise
:class:`~depot.exceptions.NotAnImageError` or
:class:`~depot.exceptions.ImageTooLargeError`, and the value then deletes the
file it had stored before the error reaches the caller. Use
:class:`~depot.fields.specialized.image.UploadedImageWithThumb` as the field's
``upload_type`` to refuse such content before anything is stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from depot.exceptions import ConfigurationError
from depot.fields._images import (
    IMAGE_FORMATS,
    Rendition,
    check_format,
    check_size,
    open_image,
    render,
)
from depot.fields.interfaces import DepotFileInfo, FileFilter
from depot.manager import DepotManager

__all__ = ["WithThumbnailFilter", "WithThumbnailsFilter"]


class _ThumbnailMaker(FileFilter):
    #: The formats accepted, as Pillow names them.
    image_formats: ClassVar[tuple[str, ...]] = IMAGE_FORMATS
    #: Images with more pixels are refused; Pillow's ``Image.MAX_IMAGE_PIXELS``
    #: is the limit in any case.
    max_pixels: ClassVar[int | None] = None

    thumbnail_format: str

    def _render(
        self, uploaded_file: DepotFileInfo, boxes: Sequence[tuple[int, int]]
    ) -> list[Rendition]:
        """Thumbnails of the file ``uploaded_file`` stored, one per box."""
        path = uploaded_file.get("path")
        if not isinstance(path, str):
            raise TypeError(
                f"{type(self).__name__} makes thumbnails of the file a value stored, but this "
                f"{type(uploaded_file).__name__} records no 'path': use it with UploadedFile "
                "or a subclass."
            )
        # The stored file, not the content given: that may be a stream already
        # read to its end, and it is the stored file the thumbnails stand for.
        with (
            DepotManager.get_file(path) as stored,
            open_image(stored, formats=self.image_formats, max_pixels=self.max_pixels) as upload,
        ):
            largest = (max(w for w, _ in boxes), max(h for _, h in boxes))
            image = upload.decode(largest)
            return [render(image, box, self.thumbnail_format, upload.icc_profile) for box in boxes]


class WithThumbnailFilter(_ThumbnailMaker):
    """Store a thumbnail of each image, as filedepot 0.12 did.

    :param size: the box the thumbnail fits in, ``(width, height)``.
    :param format: the format it is written in, a name Pillow knows
        (``'PNG'``, ``'JPEG'``, ``'WEBP'``).

    The value gets three keys, named after the size (``thumb_128x128_`` for the
    default one): ``thumb_128x128_id``, ``thumb_128x128_path`` and
    ``thumb_128x128_url``, the middleware's URL for it. Its file, stored as
    ``thumb_128x128.png``, is also ``value.thumb_128x128_file``.

    .. versionchanged:: 1.0
       Without a middleware registered when the file is stored (a script, a
       worker), ``thumb_<w>x<h>_url`` is not stored but worked out on access;
       filedepot refused to store the file. JPEG thumbnails work (filedepot
       made every thumbnail RGBA, which JPEG cannot hold). EXIF orientation
       is applied and metadata stripped.
    """

    def __init__(self, size: tuple[int, int] = (128, 128), format: str = "PNG") -> None:
        self.thumbnail_size = check_size(size, "WithThumbnailFilter(size=...)")
        self.thumbnail_format = check_format(format, "WithThumbnailFilter(format=...)")

    def on_save(self, uploaded_file: DepotFileInfo) -> None:
        """Store the thumbnail of the file ``uploaded_file`` just stored."""
        prefix = "thumb_{}x{}".format(*self.thumbnail_size)
        (thumbnail,) = self._render(uploaded_file, [self.thumbnail_size])
        thumb_path, thumb_id = uploaded_file.store_content(
            thumbnail.data, f"{prefix}.{thumbnail.extension}", thumbnail.content_type
        )
        uploaded_file[f"{prefix}_id"] = thumb_id
        uploaded_file[f"{prefix}_path"] = thumb_path
        try:
            url = DepotManager.url_for(thumb_path)
        except ConfigurationError:
            # No middleware yet: UploadedFile works the URL out from the path
            # when it is asked for.
            return
        uploaded_file[f"{prefix}_url"] = url

    def __repr__(self) -> str:
        return f"WithThumbnailFilter({self.thumbnail_size!r}, {self.thumbnail_format!r})"


class WithThumbnailsFilter(_ThumbnailMaker):
    """Store a thumbnail of each image for every named size.

    :param sizes: ``{name: (width, height)}``, each the box a thumbnail fits in.
        A name is a Python identifier not starting with ``_``.
    :param format: the format they are written in, a name Pillow knows.

    For each name, the value gets the keys ``<name>_id``, ``<name>_path``,
    ``_<name>_public_url`` (the backend's public URL, or ``None``),
    ``<name>_width`` and ``<name>_height`` (of the thumbnail), and offers
    ``<name>_file`` and ``<name>_url``, worked out from them on access.

    .. versionadded:: 1.0
    """

    def __init__(self, sizes: Mapping[str, tuple[int, int]], format: str = "PNG") -> None:
        if not isinstance(sizes, Mapping) or not sizes:
            raise ValueError(
                "WithThumbnailsFilter needs the sizes by name, e.g. "
                f"{{'small': (64, 64), 'large': (512, 512)}}, not {sizes!r}."
            )
        for name in sizes:
            if not (isinstance(name, str) and name.isidentifier()) or name.startswith("_"):
                raise ValueError(
                    f"WithThumbnailsFilter: {name!r} cannot name a thumbnail; use a Python "
                    "identifier not starting with '_' (value.<name>_url must work)."
                )
            if name == "file":
                raise ValueError(
                    "WithThumbnailsFilter: a thumbnail cannot be named 'file' ('file_id' is "
                    "the stored file's id); pick another name."
                )
        self.sizes = {
            name: check_size(size, f"WithThumbnailsFilter size {name!r}")
            for name, size in sizes.items()
        }
        self.thumbnail_format = check_format(format, "WithThumbnailsFilter(format=...)")

    def on_save(self, uploaded_file: DepotFileInfo) -> None:
        """Store the thumbnails of the file ``uploaded_file`` just stored."""
        for name in self.sizes:
            taken = [k for k in _keys(name) if k in uploaded_file]
            if taken:
                raise ConfigurationError(
                    f"WithThumbnailsFilter: the thumbnail {name!r} would overwrite the key "
                    f"{taken[0]!r}, already set by the value's type or another filter; "
                    "rename the thumbnail."
                )
        thumbnails = self._render(uploaded_file, list(self.sizes.values()))
        for name, thumbnail in zip(self.sizes, thumbnails, strict=True):
            path, file_id = uploaded_file.store_content(
                thumbnail.data, f"{name}.{thumbnail.extension}", thumbnail.content_type
            )
            with DepotManager.get_file(path) as stored:
                public_url = stored.public_url
            key_id, key_path, key_url, key_width, key_height = _keys(name)
            uploaded_file[key_id] = file_id
            uploaded_file[key_path] = path
            uploaded_file[key_url] = public_url
            uploaded_file[key_width] = thumbnail.width
            uploaded_file[key_height] = thumbnail.height

    def __repr__(self) -> str:
        return f"WithThumbnailsFilter({self.sizes!r}, {self.thumbnail_format!r})"


def _keys(name: str) -> tuple[str, str, str, str, str]:
    return (
        f"{name}_id",
        f"{name}_path",
        f"_{name}_public_url",
        f"{name}_width",
        f"{name}_height",
    )
