"""Errors a user can act on, and the exit codes the CLI turns them into.

Each error carries the one-line message the CLI prints; the CLI handles them in one place.
Exit codes follow grep: 0 results, 1 none, 2 error; 130 after Ctrl-C, as shells report it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_NONE = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class ClipsearchError(Exception):
    """A problem the user can fix; the message names it and the way out."""

    exit_code = EXIT_ERROR


class LibraryBusy(ClipsearchError):
    """Another process holds the library's write lock."""


class ModelUnavailable(ClipsearchError):
    """The model's weights cannot be had (offline, missing file, unknown name)."""


class ImageError(ClipsearchError):
    """One image cannot be read; indexing skips it with this reason."""


def os_reason(exc: OSError) -> str:
    """A short, stable reason for a failed file operation, worded the same everywhere."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "not a regular file"
    return f"cannot read file: {exc.strerror or exc}"


def safe_for_terminal(text: str) -> str:
    """Escape what a terminal would act on or cannot show: control and format characters
    (ESC, BEL, newlines, bidi overrides...) and bytes that were not valid UTF-8."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def warn(message: str) -> None:
    """The one way a problem or note reaches the user: one `clipsearch: ...` line on stderr.

    Messages name files, folders and symlink targets, any of which may hold escape
    sequences (a symlink's name once changed the terminal's title and cleared its screen):
    the whole line is escaped here, so no message can forget to.
    """
    import sys

    sys.stderr.write(f"clipsearch: {safe_for_terminal(message)}\n")
