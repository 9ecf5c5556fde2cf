"""Inline image previews in terminals that speak the kitty or iTerm2 graphics protocol.

Escape sequences only ever go to a TTY; file names printed next to them are stripped of
control characters, since a name containing ESC could otherwise drive the terminal.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Mapping, Sequence
from typing import TextIO

from PIL import Image

from ..errors import ClipsearchError
from ..photos.thumbnails import ThumbnailCache
from ..results import Hit
from .text import safe_for_terminal, score_text

KITTY_CHUNK = 4096
PREVIEW_SIDE = 160
PREVIEW_COLS = 20
KITTY_TERM_PROGRAMS = frozenset({"WezTerm", "ghostty"})
KITTY_TERMS = frozenset({"xterm-kitty", "xterm-ghostty"})
NO_PROTOCOL = (
    "no inline image protocol detected: use a kitty- or iTerm2-compatible terminal, or --html"
)


def detect_protocol(env: Mapping[str, str]) -> str | None:
    """Name the graphics protocol the terminal speaks: "kitty", "iterm2" or None.

    Inside tmux the sequences would need passthrough wrapping, so we report none there.
    """
    if env.get("TMUX"):
        return None
    if (
        env.get("KITTY_WINDOW_ID")
        or env.get("TERM") in KITTY_TERMS
        or env.get("TERM_PROGRAM") in KITTY_TERM_PROGRAMS
    ):
        return "kitty"
    if env.get("TERM_PROGRAM") == "iTerm.app" or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm2"
    return None


def encode_kitty(png_bytes: bytes, cols: int) -> str:
    """Transmit-and-display a PNG, split into the protocol's 4096-byte base64 chunks.

    q=2 silences the terminal's replies, which would otherwise land in the shell's input.
    """
    payload = base64.standard_b64encode(png_bytes).decode("ascii")
    chunks = [payload[k : k + KITTY_CHUNK] for k in range(0, len(payload), KITTY_CHUNK)] or [""]
    parts = []
    for k, chunk in enumerate(chunks):
        more = int(k < len(chunks) - 1)
        keys = f"a=T,f=100,q=2,c={cols},m={more}" if k == 0 else f"m={more}"
        parts.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(parts)


def encode_iterm2(data: bytes, name: str, cols: int) -> str:
    """An OSC 1337 inline file; the name is base64 too, so any bytes in it are harmless."""
    b64_name = base64.standard_b64encode(os.fsencode(name)).decode("ascii")
    b64_data = base64.standard_b64encode(data).decode("ascii")
    return f"\x1b]1337;File=name={b64_name};size={len(data)};inline=1;width={cols}:{b64_data}\x07"


def preview_bytes(path: str, thumbs: ThumbnailCache) -> bytes | None:
    """A small PNG of the cached thumbnail: few bytes to push through the TTY per result."""
    thumb = thumbs.get(path)
    if thumb is None:
        return None
    try:
        with Image.open(thumb) as image:
            image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
            buf = io.BytesIO()
            image.convert("RGB").save(buf, format="PNG")
    except OSError:
        return None
    return buf.getvalue()


def render_previews(
    hits: Sequence[Hit],
    stream: TextIO,
    env: Mapping[str, str],
    thumbs: ThumbnailCache,
    is_tty: bool,
    *,
    cols: int = PREVIEW_COLS,
) -> None:
    """Write each hit's image and a caption line; nothing at all when output isn't a TTY."""
    if not is_tty:
        return
    protocol = detect_protocol(env)
    if protocol is None:
        raise ClipsearchError(NO_PROTOCOL)
    for hit in hits:
        data = preview_bytes(hit.path, thumbs)
        caption = f"{hit.rank:>3}. {score_text(hit):>5}  {safe_for_terminal(hit.path)}"
        if data is None:
            stream.write(f"{caption}  (no preview)\n")
            continue
        if protocol == "kitty":
            stream.write(encode_kitty(data, cols))
        else:
            stream.write(encode_iterm2(data, os.path.basename(hit.path), cols))
        stream.write(f"\n{caption}\n")
    stream.flush()
