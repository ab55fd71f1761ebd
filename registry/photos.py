"""Evidence photos for field verifications: checked to be what they claim, size-limited.

A photo is accepted only when its bytes decode as a JPEG or PNG (Pillow reads the whole
image, so a truncated or disguised file is refused) and it is no larger than the limit.
The media type comes from the decoded content, never from what the client said.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from registry.settings import RegistryError

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}
MAX_PIXELS = 50_000_000  # a 50-megapixel photo; anything larger is a decompression bomb


class PhotoError(RegistryError):
    """A photo that is not a JPEG or PNG (``status`` 415) or is too large (413)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Photo:
    media_type: str
    content: bytes
    sha256: str
    width: int
    height: int


def checked_photo(content: bytes, max_bytes: int, filename: str = "photo") -> Photo:
    """The photo ``content`` if it is a whole JPEG or PNG of at most ``max_bytes``."""
    if len(content) > max_bytes:
        raise PhotoError(
            f"{filename}: {len(content) // 1024} kB is more than the {max_bytes // 1024} kB "
            "allowed for a photo",
            413,
        )
    if not content:
        raise PhotoError(f"{filename}: the photo is empty", 415)
    try:
        with Image.open(io.BytesIO(content)) as image:
            media_type = FORMATS.get(image.format or "")
            if media_type is None:
                raise PhotoError(
                    f"{filename}: a {image.format} image; only JPEG and PNG are accepted", 415
                )
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise PhotoError(f"{filename}: {width}x{height} pixels is too large", 413)
            image.load()  # decode it all: a truncated or corrupt file fails here
    except PhotoError:
        raise
    except Image.DecompressionBombError:
        raise PhotoError(f"{filename}: too many pixels for a photo", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        kind = (
            "not a JPEG or PNG image"
            if isinstance(exc, UnidentifiedImageError)
            else ("a damaged image")
        )
        raise PhotoError(f"{filename}: {kind}", 415) from None
    return Photo(media_type, content, hashlib.sha256(content).hexdigest(), width, height)
