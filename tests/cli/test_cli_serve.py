"""`clipsearch serve` as a command: the printed link, Ctrl-C, its errors, and that the other
commands never load the web libraries."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from conftest import TINY, run_cli, save_photo

from clipsearch.library import Library

WEB_MODULES = ("starlette", "uvicorn", "httpx", "anyio", "h11", "clipsearch.web")


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_checkpoint) -> Path:
    base = tmp_path_factory.mktemp("serve-cli")
    for seed in range(3):
        save_photo(base / "Photos" / f"p{seed}.jpg", seed=seed)
    with Library.open(
        base / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        lib.index([base / "Photos"])
    return base / "lib"


def start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipsearch", "serve", "--no-open", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    assert ready, "no link within 120 s"
    return proc, proc.stdout.readline().decode().strip()


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=30)
    return code, proc.stderr.read().decode(errors="replace")


def test_the_first_line_is_a_link_that_opens_the_app(library):
    proc, link = start("--port", "0", "--library", str(library))
    try:
        assert link.startswith("http://127.0.0.1:") and "/?token=" in link
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(link, timeout=30) as page:
            assert page.status == 200 and page.url.endswith("/")  # redirected, token gone
            assert b'id="q"' in page.read()
        with opener.open(link.split("?")[0] + "?q=a+photo", timeout=30) as page:
            assert page.read().count(b'<figure class="card"') == 3
        port = int(link.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        code, errors = stop(proc)
    assert code == 0, errors
    assert "Traceback" not in errors


def test_only_loopback_unless_host_is_given(library):
    proc, link = start("--port", "0", "--library", str(library))
    try:
        port = int(link.split(":")[2].split("/")[0])
        addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)}
        for address in addresses - {"127.0.0.1", "::1"}:  # another interface of this machine
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()
    finally:
        stop(proc)
    proc, link = start("--port", "0", "--host", "0.0.0.0", "--library", str(library))
    code, errors = stop(proc)
    assert link.startswith("http://127.0.0.1:")
    assert "listening on 0.0.0.0, not only this machine" in errors
    assert code == 0


def test_a_taken_port_is_a_clear_error(library):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--no-open", "--port", str(port), "--library", str(library))
    assert result.returncode == 2
    assert result.stdout == b""
    assert f"cannot listen on port {port}".encode() in result.stderr
    assert b"--port 0" in result.stderr and b"Traceback" not in result.stderr


def test_no_library_is_a_clear_error(tmp_path):
    result = run_cli("serve", "--no-open", "--port", "0", "--library", str(tmp_path / "none"))
    assert result.returncode == 2 and result.stdout == b""
    assert b"no library at" in result.stderr and b"Traceback" not in result.stderr


def test_without_the_extra_it_says_how_to_get_it(library):
    script = (
        "import sys\n"
        "sys.modules['uvicorn'] = None  # as if clipsearch[serve] were not installed\n"
        "from clipsearch.cli import main\n"
        f"sys.argv = ['clipsearch', 'serve', '--no-open', '--library', {str(library)!r}]\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=env, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr == (
        b"clipsearch: clipsearch serve needs its web libraries: pip install 'clipsearch[serve]'\n"
    )


def test_a_cold_query_loads_no_web_library(library):
    script = (
        "import sys\n"
        "from clipsearch.cli import main\n"
        f"sys.argv = ['clipsearch', 'query', 'a photo', '--library', {str(library)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"loaded = [m for m in {WEB_MODULES!r} if m in sys.modules]\n"
        "sys.stderr.write(f'loaded={loaded}\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=env, timeout=120
    )
    assert result.stdout.count(b"\n") == 3  # the three photos, one per line
    assert b"loaded=[]" in result.stderr, result.stderr
