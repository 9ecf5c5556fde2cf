"""Terminal previews: protocol detection, exact escape sequences, and when nothing is written."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from clipsearch.errors import ClipsearchError
from clipsearch.output.preview import (
    KITTY_CHUNK,
    NO_PROTOCOL,
    detect_protocol,
    encode_iterm2,
    encode_kitty,
    preview_bytes,
    render_previews,
)
from clipsearch.photos.thumbnails import ThumbnailCache
from clipsearch.results import Hit

KITTY_APC = re.compile(r"\x1b_G([^;]*);([A-Za-z0-9+/=]*)\x1b\\")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KITTY_WINDOW_ID": "1", "TERM": "xterm-256color"}, "kitty"),
        ({"TERM": "xterm-kitty"}, "kitty"),
        ({"TERM_PROGRAM": "WezTerm", "TERM": "xterm-256color"}, "kitty"),
        ({"TERM_PROGRAM": "ghostty"}, "kitty"),
        ({"TERM": "xterm-ghostty"}, "kitty"),
        ({"TERM_PROGRAM": "iTerm.app", "TERM": "xterm-256color"}, "iterm2"),
        ({"LC_TERMINAL": "iTerm2"}, "iterm2"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "Apple_Terminal"}, None),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "vscode"}, None),
        ({"KITTY_WINDOW_ID": ""}, None),
        ({}, None),
        (
            {"TERM": "tmux-256color", "TMUX": "/tmp/tmux-0/default,1,0", "KITTY_WINDOW_ID": "1"},
            None,
        ),
        ({"TMUX": "/tmp/tmux-0/default,1,0", "LC_TERMINAL": "iTerm2"}, None),
    ],
)
def test_detect_protocol(env: dict[str, str], expected: str | None) -> None:
    assert detect_protocol(env) == expected


def test_kitty_small_image_is_one_final_chunk() -> None:
    assert encode_kitty(b"\x89PNG", cols=12) == "\x1b_Ga=T,f=100,q=2,c=12,m=0;iVBORw==\x1b\\"


def test_kitty_large_image_is_chunked_with_continuation_flags() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes -> 13656 base64 chars -> 4 chunks
    sequence = encode_kitty(data, cols=30)
    chunks = KITTY_APC.findall(sequence)
    assert "".join(f"\x1b_G{k};{p}\x1b\\" for k, p in chunks) == sequence
    assert [keys for keys, _ in chunks] == ["a=T,f=100,q=2,c=30,m=1", "m=1", "m=1", "m=0"]
    assert [len(p) for _, p in chunks] == [KITTY_CHUNK] * 3 + [13656 - 3 * KITTY_CHUNK]
    assert base64.b64decode("".join(p for _, p in chunks)) == data


def test_iterm2_sequence() -> None:
    sequence = encode_iterm2(b"\x89PNG", "cat.png", cols=20)
    name = base64.b64encode(b"cat.png").decode()
    assert sequence == f"\x1b]1337;File=name={name};size=4;inline=1;width=20:iVBORw==\x07"


def test_iterm2_name_with_undecodable_bytes_is_encoded_not_raw() -> None:
    sequence = encode_iterm2(b"x", "caf\udce9\x07.png", cols=5)
    name = base64.b64encode(b"caf\xe9\x07.png").decode()
    assert sequence.startswith(f"\x1b]1337;File=name={name};")
    assert sequence.count("\x07") == 1


@pytest.fixture
def thumbs(tmp_path: Path) -> ThumbnailCache:
    return ThumbnailCache(tmp_path / "thumbs")


def photo(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    Image.new("RGB", (640, 480), (20, 160, 90)).save(path, format="PNG")
    return str(path)


def test_preview_bytes_are_a_small_png(tmp_path: Path, thumbs: ThumbnailCache) -> None:
    data = preview_bytes(photo(tmp_path, "a.png"), thumbs)
    assert data is not None
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and max(image.size) <= 160
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    assert preview_bytes(str(tmp_path / "bad.jpg"), thumbs) is None


def test_nothing_is_written_when_not_a_tty(tmp_path: Path, thumbs: ThumbnailCache) -> None:
    stream = io.StringIO()
    hits = [Hit(1, 0.3, photo(tmp_path, "a.png"))]
    for env in ({"TERM": "xterm-kitty"}, {}):
        render_previews(hits, stream, env, thumbs, is_tty=False)
    assert stream.getvalue() == ""


def test_no_protocol_on_a_tty_is_an_error(tmp_path: Path, thumbs: ThumbnailCache) -> None:
    stream = io.StringIO()
    hits = [Hit(1, 0.3, photo(tmp_path, "a.png"))]
    with pytest.raises(ClipsearchError) as info:
        render_previews(hits, stream, {"TERM": "xterm-256color"}, thumbs, is_tty=True)
    assert str(info.value) == NO_PROTOCOL
    assert NO_PROTOCOL.startswith("no inline image protocol detected")
    assert stream.getvalue() == ""


def test_kitty_render_has_image_then_safe_caption(tmp_path: Path, thumbs: ThumbnailCache):
    hostile = photo(tmp_path, "evil\x1b]0;pwned\x07.png")
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    hits = [Hit(1, 0.312, hostile), Hit(2, 0.25, str(tmp_path / "broken.jpg"))]
    stream = io.StringIO()
    render_previews(hits, stream, {"KITTY_WINDOW_ID": "3"}, thumbs, is_tty=True, cols=16)
    out = stream.getvalue()
    chunks = KITTY_APC.findall(out)
    assert chunks[0][0].startswith("a=T,f=100,q=2,c=16,")
    assert base64.b64decode("".join(p for _, p in chunks)).startswith(b"\x89PNG")
    text = KITTY_APC.sub("", out)
    assert "\x1b" not in text and "\x07" not in text
    assert f"  1. 0.312  {tmp_path}/evil\\x1b]0;pwned\\x07.png\n" in text
    assert text.endswith(f"  2. 0.250  {tmp_path}/broken.jpg  (no preview)\n")


def test_iterm2_render(tmp_path: Path, thumbs: ThumbnailCache) -> None:
    stream = io.StringIO()
    hits = [Hit(1, 0.3, photo(tmp_path, "a.png"))]
    render_previews(hits, stream, {"TERM_PROGRAM": "iTerm.app"}, thumbs, is_tty=True)
    name = base64.b64encode(b"a.png").decode()
    assert stream.getvalue().startswith(f"\x1b]1337;File=name={name};size=")
    assert ";inline=1;width=20:iVBOR" in stream.getvalue()
    assert stream.getvalue().endswith(f"\x07\n  1. 0.300  {hits[0].path}\n")
