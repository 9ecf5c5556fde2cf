"""Small JPEG thumbnails on disk, made once per file version and shared by gallery and previews.

Thumbnails are files rather than inline data so a page with hundreds of results stays light,
and keyed by path + size + mtime so an edited photo gets a fresh thumbnail without any
invalidation step.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

from ..errors import ClipsearchError, ImageError
from ..fsutil import replace_atomically
from .decode import default_max_pixels, load_image

THUMB_SIDE = 256
JPEG_QUALITY = 85


class ThumbnailCache:
    """A directory of thumbnails named by a hash of each source file's version."""

    def __init__(self, cache_dir: Path | str, *, side: int = THUMB_SIDE) -> None:
        self.cache_dir = Path(cache_dir).absolute()
        self.side = side
        # Pillow's own bomb check is off (decode.py), so bound what one thumbnail may decode.
        self.max_pixels = default_max_pixels()
        try:
            # User-only: thumbnails reveal what the photos show.
            self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ClipsearchError(f"cannot create thumbnail cache {self.cache_dir}: {exc}") from exc

    def get(self, path: str) -> Path | None:
        """Return the thumbnail for `path`, making it if needed; None if the image is unreadable."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        thumb = self.cache_dir / f"{_version_key(path, st.st_size, st.st_mtime_ns)}.jpg"
        if thumb.is_file() and os.access(thumb, os.R_OK):
            return thumb
        try:
            image = load_image(path, min_side=self.side, max_pixels=self.max_pixels)
        except ImageError:
            return None
        image.thumbnail((self.side, self.side))
        try:
            self._store(image, thumb)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        return thumb

    def _unwritable(self, exc: OSError) -> ClipsearchError:
        """One line instead of a traceback: a full disk, or a cache another user (root
        running `query --html` on your library) made and you cannot write to."""
        reason = exc.strerror or str(exc)
        return ClipsearchError(
            f"cannot write thumbnails in {self.cache_dir} ({reason}): free some disk space, "
            f"or if another user made that folder, remove it (or chown it back) and try again"
        )

    def _store(self, image: Image.Image, thumb: Path) -> None:
        """Write atomically so a crash or a concurrent run never leaves a truncated JPEG; no
        fsync, as a thumbnail lost to a power cut is simply made again."""
        replace_atomically(
            thumb, lambda tmp: image.save(tmp, format="JPEG", quality=JPEG_QUALITY), durable=False
        )


def _version_key(path: str, size: int, mtime_ns: int) -> str:
    """Hash the path bytes (any encoding) with size and mtime: a new version gets a new name."""
    digest = hashlib.sha256(os.fsencode(path))
    digest.update(f"\0{size}\0{mtime_ns}".encode())
    return digest.hexdigest()[:32]
