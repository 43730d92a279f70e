"""An image value with a thumbnail: :class:`UploadedImageWithThumb` (needs Pillow)."""

from __future__ import annotations

from typing import Any, ClassVar

from depot.fields._images import IMAGE_FORMATS, check_format, check_size, open_image, render
from depot.fields.upload import UploadedFile
from depot.io.interfaces import StoredFile

__all__ = ["UploadedImageWithThumb"]


class UploadedImageWithThumb(UploadedFile):
    """An uploaded image, kept with a thumbnail in the same depot.

    Use it as a field's ``upload_type``. Besides :class:`UploadedFile`'s keys it
    records, as filedepot 0.12 did, ``thumb_id``, ``thumb_path`` and
    ``_thumb_public_url``, and, new, ``width`` and ``height``. The thumbnail is
    :attr:`thumb_file`, served at :attr:`thumb_url`.

    Change the class attributes in a subclass to change what is stored::

        class Avatar(UploadedImageWithThumb):
            thumbnail_size = (64, 64)
            thumbnail_format = 'JPEG'

    Content that is not an image in one of :attr:`image_formats`, that is cut
    short or damaged, or that has more pixels than :attr:`max_pixels` is
    refused with :class:`~depot.exceptions.NotAnImageError` or
    :class:`~depot.exceptions.ImageTooLargeError` before anything is stored.

    An image whose longer side reaches :attr:`max_size` is stored shrunk to
    fit it, as filedepot did: re-encoded in its own format (a multi-picture
    JPEG as a plain JPEG), upright, in sRGB and without metadata. A smaller
    image is stored as uploaded, metadata included. The thumbnail never carries
    metadata: see :mod:`depot.fields.filters.thumbnails`.

    .. versionchanged:: 1.0
       Content is checked before anything is stored; ``width`` and ``height``
       are recorded; the thumbnail is upright, in sRGB and without metadata;
       JPEG thumbnails work.
    """

    #: Images whose width or height reaches this many pixels are stored shrunk
    #: to fit in a square of this side; ``None`` stores every image as uploaded.
    max_size: ClassVar[int | None] = 1024
    #: The format thumbnails are written in, a name Pillow knows.
    thumbnail_format: ClassVar[str] = "PNG"
    #: The box thumbnails are shrunk to fit in, ``(width, height)``.
    thumbnail_size: ClassVar[tuple[int, int]] = (128, 128)
    #: The formats accepted, as Pillow names them.
    #:
    #: .. versionadded:: 1.0
    image_formats: ClassVar[tuple[str, ...]] = IMAGE_FORMATS
    #: Images with more pixels are refused; Pillow's ``Image.MAX_IMAGE_PIXELS``
    #: (about 89 million) is the limit in any case.
    #:
    #: .. versionadded:: 1.0
    max_pixels: ClassVar[int | None] = None

    def process_content(
        self, content: Any, filename: str | None = None, content_type: str | None = None
    ) -> None:
        """Check the image, then store it and its thumbnail."""
        name = type(self).__name__
        thumb_format = check_format(self.thumbnail_format, f"{name}.thumbnail_format")
        thumb_box = check_size(self.thumbnail_size, f"{name}.thumbnail_size")
        with open_image(
            content,
            filename,
            content_type,
            formats=self.image_formats,
            max_pixels=self.max_pixels,
        ) as upload:
            shrink = self.max_size is not None and max(upload.size) >= self.max_size
            if shrink:
                assert self.max_size is not None
                box = (self.max_size, self.max_size)
                image = upload.decode(box)
                resized = render(image, box, upload.save_format, upload.icc_profile)
                to_store = upload.resized_content(resized)
                width, height = resized.width, resized.height
            else:
                image = upload.decode(thumb_box)
                to_store = upload.content()
                width, height = upload.size
            thumbnail = render(image, thumb_box, thumb_format, upload.icc_profile)
            # Everything is checked and rendered: only now is anything stored.
            super().process_content(to_store)
        thumb_path, thumb_id = self.store_content(
            thumbnail.data, f"thumb.{thumbnail.extension}", thumbnail.content_type
        )
        self["thumb_id"] = thumb_id
        self["thumb_path"] = thumb_path
        with self.depot.get(thumb_id) as stored:
            self["_thumb_public_url"] = stored.public_url
        self["width"] = width
        self["height"] = height

    @property
    def thumb_file(self) -> StoredFile:
        """The thumbnail, open for reading (close it when done)."""
        return self._extra_file("thumb")

    @property
    def thumb_url(self) -> str:
        """The thumbnail's public URL if the backend has one, else the middleware's URL for it."""
        return self._extra_url("thumb")

    @property
    def width(self) -> int | None:
        """The stored image's width in pixels, as it displays (EXIF orientation applied).

        ``None`` for a value stored by filedepot, which did not record it.

        .. versionadded:: 1.0
        """
        width: int | None = self.get("width")
        return width

    @property
    def height(self) -> int | None:
        """The stored image's height in pixels, as it displays; ``None`` if not recorded.

        .. versionadded:: 1.0
        """
        height: int | None = self.get("height")
        return height
