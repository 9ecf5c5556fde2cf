"""Whether a root folder is really there: a share that is not mounted must not look empty.

An unmounted share leaves either nothing (the path is missing) or an empty mount point, and
an index run that believed either would remove every photo under it, then embed them all
again once the share is back (one to two hours for 50,000 photos at 7-20 img/s).  So a root
is *offline* when it is missing, empty while the library holds photos under it, or on
another device than the one recorded when it was indexed.  A share mounted again usually
gets a new device number (NFS and SMB mounts do on every mount), so a root that is a mount
point now is trusted whatever its number; a plain folder on another device is not.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

MISSING = "missing"
EMPTY = "empty"
OTHER_DEVICE = "on another device"


def offline_reason(path: str, device: int | None, holds_photos: Callable[[], bool]) -> str | None:
    """Why root `path` (recorded on `device`) is offline, or None when it is there.
    `holds_photos` is asked only for an empty folder (it is a database query)."""
    try:
        st = os.stat(path)
    except OSError:
        return MISSING
    if not stat.S_ISDIR(st.st_mode):
        return MISSING
    if device is not None and st.st_dev != device and not os.path.ismount(path):
        return OTHER_DEVICE
    if _is_empty(path) and holds_photos():
        return EMPTY
    return None


def device_of(path: str) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def _is_empty(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False  # unreadable: the scan reports it, and keeps what lies below
