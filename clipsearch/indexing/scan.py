"""Find the photo files under the library's folders: one scandir walk, no file opened.

Re-indexing an unchanged library has to stay fast, so names alone decide what is a photo
and each photo costs a single stat; whether its content decodes is the decoder's business.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pathspec import GitIgnoreSpec

from ..errors import ClipsearchError
from ..photos import formats

IGNORE_FILE = ".clipsearchignore"
# An ignore file is a few lines of patterns; 1 MiB is thousands of times more than any real
# one, and small enough that reading it can never hurt (a link to /dev/zero grew to 6.3 GB
# in 14 s before this limit).
IGNORE_FILE_MAX_BYTES = 1024 * 1024
FINGERPRINT_CHUNK = 1024 * 1024
FINGERPRINT_PREFIX = "sha256:"

# Folders that operating systems and NAS boxes fill with thumbnails, trash, snapshots or
# metadata: indexing them would add previews and duplicates. Compared case-folded.
DEFAULT_EXCLUDED_DIRS = frozenset(
    {
        "@eadir",  # Synology thumbnails and metadata
        "#recycle",  # Synology recycle bin
        "#snapshot",  # Synology snapshots: full copies of the share
        ".@__thumb",  # QNAP thumbnails
        "@__thumb",  # QNAP thumbnails, older firmware
        "@recycle",  # QNAP recycle bin
        "@recently-snapshot",  # QNAP snapshots
        ".thumbnails",  # freedesktop thumbnail cache (~/.cache/thumbnails, older ~/.thumbnails)
        ".trashes",  # macOS trash on external volumes
        "$recycle.bin",  # Windows recycle bin
        "recycler",  # Windows XP recycle bin
        "system volume information",  # Windows restore points
        "lost+found",  # fsck's salvage
        "node_modules",
        ".git",
    }
)
# Pseudo file systems: their files are not photos, and walking them (a symlink to / inside a
# root once walked all of /proc) can hang on a read or never end.
PSEUDO_FOLDERS = ("/proc", "/sys", "/dev")

# .Trash, .Trash-1000 (freedesktop trash per user on removable drives), .Trashes.
_TRASH_PREFIX = ".trash"

# Ignore specs in force for a folder, outermost first, each with the length of its base
# folder's path prefix so a path's relative part is one slice away.
_Rules = tuple[tuple[int, GitIgnoreSpec], ...]


@dataclass(frozen=True)
class FoundFile:
    """A photo as the file system describes it; size and mtime tell whether it changed."""

    path: str
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    """What a scan found, plus the counts the index summary reports."""

    files: list[FoundFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    videos: int = 0
    raw_paired: int = 0
    missing_extras: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Fence:
    """Where a walk may go. A symlinked folder is followed only inside `inside` (real paths of
    the roots; None: anywhere), never into PSEUDO_FOLDERS; the `skip` folder (the library's
    own: its thumbnails are not photos) is never walked."""

    inside: tuple[str, ...] | None = None
    skip: str | None = None

    @classmethod
    def for_library(
        cls, roots: Sequence[str], library: str | os.PathLike[str], follow_links: bool
    ) -> Fence:
        inside = None if follow_links else tuple(os.path.realpath(r) for r in roots)
        return cls(inside, os.path.realpath(library))

    def why_not(self, real: str) -> str | None:
        """Why a symlinked folder whose real path is `real` is not followed, or None."""
        if _under_any(real, PSEUDO_FOLDERS):
            return f"symlink into {real}, a system folder: not followed"
        if self.inside is not None and not _under_any(real, self.inside):
            return (
                f"symlink to {real}, outside the indexed folders: not followed "
                "(index --follow-links to follow it)"
            )
        return None


def _under_any(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(os.path.join(f, "")) for f in folders)


@dataclass(frozen=True)
class _Folder:
    """A folder waiting to be walked; key is the real folder's (st_dev, st_ino)."""

    path: str
    key: tuple[int, int]
    rules: _Rules


def normalise_root(path: str | os.PathLike[str]) -> str:
    """Absolute form of a folder the user named, failing early with a message they can act on.

    abspath, not realpath: results show paths as the user knows them, symlinks included.
    """
    root = os.path.abspath(os.path.expanduser(os.fsdecode(path)))
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise ClipsearchError(f"Folder not found: {root}") from None
    except OSError as err:
        raise ClipsearchError(f"Cannot open folder {root}: {err.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ClipsearchError(f"Not a folder: {root}")
    return root


def scan(
    roots: Sequence[str | os.PathLike[str]],
    *,
    excludes: Sequence[str] = (),
    default_excludes: bool = True,
    raw_too: bool = False,
    fence: Fence | None = None,
) -> ScanResult:
    """Find the photos under roots, each real file and folder once.

    excludes are gitignore patterns relative to each root; `.clipsearchignore` files add
    patterns relative to their own folder. Both always apply. default_excludes=False turns
    off both the DEFAULT_EXCLUDED_DIRS list and the skipping of hidden (dot) names.
    A RAW file with a processed JPEG/HEIC of the same name beside it is skipped unless
    raw_too. Symlinks are followed; whatever is also reachable without one is kept under
    that path. Unreadable folders and broken or looping symlinks land in problems.
    `fence` says where symlinked folders may lead (by default: anywhere but PSEUDO_FOLDERS).
    """
    walk = _Walk(default_excludes=default_excludes, raw_too=raw_too, fence=fence or Fence())
    exclude_spec = _exclude_spec(excludes)
    for root in _outermost(normalise_root(r) for r in roots):
        walk.add_root(root, exclude_spec)
    return walk.run()


def scan_each(
    roots: Sequence[str], settings: dict[str, dict], fence: Fence | None = None
) -> ScanResult:
    """Scan each root with its own settings (see indexing/settings.py); roots sharing
    settings are walked together.  `roots` must not nest (see `outermost`)."""
    groups: dict[str, list[str]] = {}
    for root in roots:
        groups.setdefault(repr(sorted(settings[root].items())), []).append(root)
    merged = ScanResult()
    for members in groups.values():
        s = settings[members[0]]
        found = scan(
            members,
            excludes=s["exclude"],
            default_excludes=s["default_excludes"],
            raw_too=s["raw_too"],
            fence=fence,
        )
        merged.files += found.files
        merged.problems += found.problems
        merged.videos += found.videos
        merged.raw_paired += found.raw_paired
        for extra, count in found.missing_extras.items():
            merged.missing_extras[extra] = merged.missing_extras.get(extra, 0) + count
    merged.files.sort(key=lambda f: f.path)
    merged.problems.sort()
    return merged


def check_excludes(excludes: Sequence[str]) -> None:
    """Fail on a bad --exclude pattern before anything is recorded."""
    _exclude_spec(excludes)


def outermost(roots: Iterable[str]) -> list[str]:
    """Roots without those inside another (a folder is indexed once, as its outer root)."""
    return _outermost(roots)


def fingerprint(path: str, size: int) -> str:
    """Recognise a renamed or moved photo for certain: a SHA-256 of its size and whole content.

    A hash of the size, head and tail alone (64 KB each, until issue 18) collided for
    uncompressed files with equal margins: a moved BMP took another photo's vector. Hashing
    all of it runs at 1.8 GB/s here (2.7 ms for a 5 MB phone JPEG, about 2% of decoding and
    embedding it), and the decoder has just pulled the file into the page cache. Fingerprints
    of the older kind never match one of these, so such a move is embedded again, once.

    Raises OSError when the file cannot be read.
    """
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        while chunk := f.read(FINGERPRINT_CHUNK):
            digest.update(chunk)
    return FINGERPRINT_PREFIX + digest.hexdigest()


def _exclude_spec(excludes: Sequence[str]) -> GitIgnoreSpec | None:
    """Compile the --exclude patterns once; a bad one stops the run before any work."""
    if not excludes:
        return None
    try:
        return GitIgnoreSpec.from_lines(excludes)
    except ValueError as err:
        raise ClipsearchError(
            f"Bad --exclude pattern ({err}); use gitignore syntax such as '*.png' or 'Screenshots/'"
        ) from None


def _outermost(roots: Iterable[str]) -> list[str]:
    """Drop roots inside other roots (and repeats) so no folder is indexed twice."""
    kept: list[str] = []
    for root in sorted(set(roots)):
        if not any(root.startswith(os.path.join(outer, "")) for outer in kept):
            kept.append(root)
    return kept


def _prefix_len(folder: str) -> int:
    return len(os.path.join(folder, ""))


def _is_default_excluded(name: str) -> bool:
    """Hidden names and the known cache, trash and system folders."""
    if name.startswith("."):
        return True
    folded = name.casefold()
    return folded in DEFAULT_EXCLUDED_DIRS or folded.startswith(_TRASH_PREFIX)


def _ignored(rules: _Rules, path: str, is_dir: bool) -> bool:
    """Git's rule: the deepest ignore file with a matching pattern decides, last match wins."""
    for prefix_len, spec in reversed(rules):
        relative = path[prefix_len:] + ("/" if is_dir else "")
        verdict = spec.check_file(relative).include
        if verdict is not None:
            return verdict
    return False


def _read_ignore_file(path: str) -> str:
    """The text of an ignore file, read only when it is a regular file of sane size.

    Opened non-blocking, then judged by fstat of what was opened (no race with a swap): a FIFO
    would otherwise block forever while the write lock is held, and a device or a huge file
    would be read into memory without end. Raises ValueError saying why it was not used.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > IGNORE_FILE_MAX_BYTES:
            raise ValueError(f"larger than {IGNORE_FILE_MAX_BYTES // 1024} KiB")
        data = f.read(IGNORE_FILE_MAX_BYTES + 1)
    if len(data) > IGNORE_FILE_MAX_BYTES:
        raise ValueError(f"larger than {IGNORE_FILE_MAX_BYTES // 1024} KiB")
    return data.decode("utf-8", errors="surrogateescape")


def _key_of(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _stem(name: str) -> str:
    return os.path.splitext(name)[0].casefold()


def _link_problem(entry: os.DirEntry[str], err: OSError) -> str:
    """Say why a symlink leads nowhere, naming its target where that helps."""
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if err.errno not in (errno.ENOENT, errno.ENOTDIR):
        return f"cannot follow symlink: {err.strerror}"
    try:
        return f"broken symlink (target {os.readlink(entry.path)} does not exist)"
    except OSError:
        return "broken symlink"


class _Walk:
    """One scan's state: the folders left to walk and what has been found so far.

    Symlinked folders wait until every plainly reachable folder is walked, so a folder
    reachable both ways is indexed under its real path, and each real folder only once.
    """

    def __init__(self, *, default_excludes: bool, raw_too: bool, fence: Fence) -> None:
        self.fence = fence
        self.skip_key = _key_of(fence.skip) if fence.skip else None
        self.default_excludes = default_excludes
        self.raw_too = raw_too
        self.result = ScanResult()
        self.folders: list[_Folder] = []
        self.linked_folders: deque[_Folder] = deque()
        self.walked: dict[tuple[int, int], str] = {}
        self.linked_files: list[tuple[FoundFile, tuple[int, int]]] = []
        self.file_keys: set[tuple[int, int]] = set()
        self.extras: dict[str, str | None] = {}

    def add_root(self, root: str, excludes: GitIgnoreSpec | None) -> None:
        rules: _Rules = () if excludes is None else ((_prefix_len(root), excludes),)
        try:
            st = os.stat(root)
        except OSError as err:
            self.problem(root, f"cannot open folder: {err.strerror}")
            return
        queue = self.linked_folders if os.path.islink(root) else self.folders
        queue.append(_Folder(root, (st.st_dev, st.st_ino), rules))

    def run(self) -> ScanResult:
        while self.folders or self.linked_folders:
            self.visit(self.folders.pop() if self.folders else self.linked_folders.popleft())
        self.add_linked_files()
        self.result.files.sort(key=lambda found: found.path)
        self.result.problems.sort()
        return self.result

    def problem(self, path: str, reason: str) -> None:
        self.result.problems.append((path, reason))

    def claim(self, folder: _Folder) -> bool:
        """True the first time a real folder comes up; a link back into itself is a loop."""
        first = self.walked.setdefault(folder.key, folder.path)
        if first == folder.path:
            return True
        if folder.path.startswith(os.path.join(first, "")):
            self.problem(folder.path, f"symlink loop: leads back to {first}")
        return False

    def visit(self, folder: _Folder) -> None:
        if not self.claim(folder):
            return
        try:
            with os.scandir(folder.path) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as err:
            self.problem(folder.path, f"cannot open folder: {err.strerror}")
            return
        rules = self.rules_for(folder, entries)
        photos = [entry for entry in entries if self.take(entry, rules)]
        self.keep_photos(photos)

    def rules_for(self, folder: _Folder, entries: list[os.DirEntry[str]]) -> _Rules:
        """Add the folder's own .clipsearchignore, if any, to the rules it inherited."""
        ignore_file = next((entry for entry in entries if entry.name == IGNORE_FILE), None)
        if ignore_file is None:
            return folder.rules
        try:
            text = _read_ignore_file(ignore_file.path)
            spec = GitIgnoreSpec.from_lines(text.splitlines())
        except OSError as err:
            self.problem(ignore_file.path, f"ignore file not read: {err.strerror}")
            return folder.rules
        except ValueError as err:
            self.problem(ignore_file.path, f"ignore file not used: {err}")
            return folder.rules
        return (*folder.rules, (_prefix_len(folder.path), spec))

    def take(self, entry: os.DirEntry[str], rules: _Rules) -> bool:
        """Queue a folder, count a video; True for a photo candidate."""
        if self.default_excludes and _is_default_excluded(entry.name):
            return False
        try:
            if entry.is_symlink():
                entry.stat()  # judged by its target; cached for the calls below
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
        except OSError as err:
            if not _ignored(rules, entry.path, is_dir=False):
                self.problem(entry.path, _link_problem(entry, err))
            return False
        if _ignored(rules, entry.path, is_dir):
            return False
        if is_dir:
            self.queue_folder(entry, rules)
            return False
        ext = formats.extension(entry.name)
        if is_file and ext in formats.VIDEO_EXTENSIONS:
            self.result.videos += 1
        return is_file and ext in formats.IMAGE_EXTENSIONS

    def queue_folder(self, entry: os.DirEntry[str], rules: _Rules) -> None:
        try:
            st = entry.stat()
        except OSError as err:
            self.problem(entry.path, f"cannot open folder: {err.strerror}")
            return
        if (st.st_dev, st.st_ino) == self.skip_key:
            return  # the library's own folder
        if entry.is_symlink():
            why = self.fence.why_not(os.path.realpath(entry.path))
            if why:
                self.problem(entry.path, why)
                return
        elif entry.path in PSEUDO_FOLDERS:
            return
        folder = _Folder(entry.path, (st.st_dev, st.st_ino), rules)
        (self.linked_folders if entry.is_symlink() else self.folders).append(folder)

    def keep_photos(self, photos: list[os.DirEntry[str]]) -> None:
        """Drop RAW halves of RAW+JPEG pairs and photos needing a missing extra; stat the rest."""
        typed = [(entry, formats.extension(entry.name)) for entry in photos]
        processed = set() if self.raw_too else self.processed_stems(typed)
        for entry, ext in typed:
            extra = self.extra_for(ext)
            if ext in formats.RAW_EXTENSIONS and _stem(entry.name) in processed:
                self.result.raw_paired += 1
            elif extra is not None:
                self.result.missing_extras[extra] = self.result.missing_extras.get(extra, 0) + 1
            else:
                self.keep(entry)

    def processed_stems(self, typed: list[tuple[os.DirEntry[str], str]]) -> set[str]:
        """Names of the JPEG/HEIC photos that will be indexed: their RAW twins are redundant."""
        return {
            _stem(entry.name)
            for entry, ext in typed
            if ext in formats.PROCESSED_EXTENSIONS and self.extra_for(ext) is None
        }

    def keep(self, entry: os.DirEntry[str]) -> None:
        try:
            st = entry.stat()
        except OSError as err:
            self.problem(entry.path, f"cannot stat: {err.strerror}")
            return
        found = FoundFile(entry.path, st.st_size, st.st_mtime_ns)
        key = (st.st_dev, st.st_ino)
        if entry.is_symlink():
            self.linked_files.append((found, key))
        else:
            self.result.files.append(found)
            self.file_keys.add(key)

    def add_linked_files(self) -> None:
        """A symlinked photo counts only when its target was not found some other way."""
        for found, key in sorted(self.linked_files, key=lambda pair: pair[0].path):
            if key not in self.file_keys:
                self.file_keys.add(key)
                self.result.files.append(found)

    def extra_for(self, ext: str) -> str | None:
        """formats.missing_extra looks for a module; ask once per extension, not per file."""
        if ext not in self.extras:
            self.extras[ext] = formats.missing_extra(ext)
        return self.extras[ext]
