"""Typed input errors with machine-readable codes, shared by the aligner, the CLI and the API.

Torch-free. The API maps each `code` to an HTTP status (service/api/errors.py); the CLI prints it.
"""

from __future__ import annotations


class InputError(Exception):
    """A problem with what the user sent; `code` is stable and machine-readable."""

    code = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImage(InputError):
    """Not a decodable image (unknown format, truncated or corrupt data)."""

    code = "invalid_image"


class UnsupportedFormat(InvalidImage):
    """Not one of the accepted image formats (or not an image at all)."""

    code = "unsupported_format"


class ImageTooLarge(InputError):
    """More pixels than the configured limit (checked from the header, before decoding)."""

    code = "image_too_large"


class NoFaceFound(InputError):
    """The detector found no human face."""

    code = "no_face"


class FaceTooSmall(InputError):
    """A face was found, but its FFHQ crop is below the configured minimum size."""

    code = "face_too_small"


class FaceIndexOutOfRange(InputError):
    """`face_index` asks for a face the photo does not have."""

    code = "face_index_out_of_range"


class TooManyFaces(InputError):
    """`faces=all` on a photo with more faces to stylize than `AGILEGAN_MAX_FACES`."""

    code = "too_many_faces"
