"""Errors a user can act on: each carries the one-line message the CLI prints and its exit code."""

from __future__ import annotations


class ClipsearchError(Exception):
    """A problem the user can fix; the message names it and the way out."""

    exit_code = 2


class LibraryBusy(ClipsearchError):
    """Another process holds the library's write lock."""


class ModelUnavailable(ClipsearchError):
    """The model's weights cannot be had (offline, missing file, unknown name)."""


class ImageError(ClipsearchError):
    """One image cannot be read; indexing skips it with this reason."""
