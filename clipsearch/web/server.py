"""Starting `clipsearch serve`: open the library, bind, print the link, serve until Ctrl-C.

The socket is bound before anything is printed, so the printed link works at once (a browser
that connects before uvicorn accepts just waits in the listen queue), and `--port 0` prints
the port the system chose.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path

from clipsearch.errors import ClipsearchError

DEFAULT_PORT = 8765
LOOPBACK = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::", "")


def require_web_libraries() -> None:
    """The web libraries are an optional extra; without them, say how to get them."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ClipsearchError(
            "clipsearch serve needs its web libraries: pip install 'clipsearch[serve]'"
        ) from None


def serve(
    library: Path | None,
    *,
    host: str = LOOPBACK,
    port: int | None = None,
    open_browser: bool = True,
    warn: Callable[[str], None] = print,
) -> None:
    require_web_libraries()
    import uvicorn

    from clipsearch.web.app import WebState, create_app

    state = WebState(library)
    try:
        state.open()
        sock = bind(host, port)
    except BaseException:
        state.close()
        raise
    token = secrets.token_urlsafe(32)
    link = f"http://{url_host(host)}:{sock.getsockname()[1]}/?token={token}"
    app = create_app(state, token=token, names=host_names(host))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    if not is_loopback(host):
        warn(
            f"listening on {host or 'every address'}, not only this machine: anyone who can "
            "reach it and has the link can see your photos"
        )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server is stopped
        sys.stdout.write(link + "\n")
        sys.stdout.flush()
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(link,), daemon=True).start()
        uvicorn.Server(config).run(sockets=[sock])


def bind(host: str, port: int | None) -> socket.socket:
    """Listen on host:port; without --port, DEFAULT_PORT or else any free port."""
    wanted = DEFAULT_PORT if port is None else port
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host or None, wanted, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ClipsearchError(f"cannot listen on {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        if port is not None:
            sock.close()
            raise ClipsearchError(
                f"cannot listen on port {port} ({exc.strerror}): pick another --port, "
                "or --port 0 for any free one"
            ) from None
        sock.bind((address[0], 0, *address[2:]))
    sock.listen(128)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """The host to print in the link: a wildcard address is reached locally by loopback."""
    if host in WILDCARDS:
        return "127.0.0.1" if host != "::" else "[::1]"
    return f"[{host}]" if ":" in host else host


def host_names(host: str) -> tuple[str, ...]:
    """Domain names the Host header may carry besides IP literals and localhost."""
    if host in WILDCARDS:
        return (host, socket.gethostname(), socket.getfqdn())
    return (host,)
