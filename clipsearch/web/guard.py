"""Who may talk to the server: the token, the Host check, and the headers every answer carries.

A local server is reachable by every user of the machine and, through the browser, by every
web page the user opens.  So each start draws a random token; the URL printed at start carries
it once (`/?token=...`), and the server answers with a cookie and a redirect to the same page
without it, so it stays out of the address bar, history and bookmarks.  The cookie is
HttpOnly and SameSite=Strict: another site's page can neither read it nor make the browser
send it.  A Host header naming some other domain is refused, which defeats DNS rebinding (a
hostile domain re-pointed at 127.0.0.1).  Every answer forbids inline script and framing.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
LOCAL_NAMES = frozenset({"localhost"})
SAFE_METHODS = frozenset({"GET", "HEAD"})


def cookie_name(port: int) -> str:
    """Cookies ignore ports: two servers on one machine must not overwrite each other's."""
    return f"clipsearch-{port}"


def host_name(header: str) -> str | None:
    """The name part of a Host header (`[::1]:80` → `::1`), lower-cased; None if malformed."""
    try:
        parts = urlsplit(f"//{header}")
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    return parts.hostname


def host_allowed(header: str, names: Iterable[str]) -> bool:
    """IP literals (a rebinding attack needs a domain name), localhost and the names the
    server was started with."""
    name = host_name(header)
    if not name:
        return False
    if name in LOCAL_NAMES or name in {n.lower() for n in names}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Guard:
    """ASGI middleware in front of the whole app."""

    def __init__(self, app, token: str, names: Iterable[str] = ()) -> None:
        self.app = app
        self.token = token
        self.names = frozenset(n.lower() for n in names)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets here
            await send({"type": "websocket.close", "code": 1008})
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _respond(send, *refusal)
            return
        if _query_token(scope) is not None:
            await self._welcome(scope, send)
            return
        await self.app(scope, receive, _with_headers(send))

    def _refusal(self, scope) -> tuple[int, str, list] | None:
        headers = _headers(scope)
        host = headers.get("host", "")
        if not host_allowed(host, self.names):
            return 400, "This server only answers requests addressed to it by its own name.", []
        if not _same_origin(headers, host, scope["method"]):
            return 403, "Requests from other sites are refused.", []
        token = _query_token(scope)
        if token is not None:
            return None if self._valid(token) else (403, FORBIDDEN, [])
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is just no cookie
            cookie = SimpleCookie()
        morsel = cookie.get(cookie_name(_port(scope)))
        if morsel is None or not self._valid(morsel.value):
            return 403, FORBIDDEN, []
        return None

    def _valid(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    async def _welcome(self, scope, send) -> None:
        """Swap the URL's token for a cookie, and show the same page without it."""
        kept = [(k, v) for k, v in _query(scope) if k != "token"]
        # One leading slash: `//other.site/` would send the browser elsewhere.
        location = "/" + quote(scope["path"].lstrip("/")) + (f"?{urlencode(kept)}" if kept else "")
        cookie = f"{cookie_name(_port(scope))}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        extra = [(b"location", location.encode()), (b"set-cookie", cookie.encode())]
        await _respond(send, 303, "Signed in.", extra)


FORBIDDEN = (
    "This clipsearch server needs the link it printed when it started (the one with "
    "?token=...): open that link again. Each start of `clipsearch serve` draws a new token."
)


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _query(scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def _query_token(scope) -> str | None:
    return next((v for k, v in _query(scope) if k == "token"), None)


def _port(scope) -> int:
    server = scope.get("server") or ("", 0)
    return int(server[1] or 0)


def _same_origin(headers: dict[str, str], host: str, method: str) -> bool:
    """Refuse what another site's page makes the browser ask: any POST whose Origin is not
    this server, and any image, script or fetch it embeds (another local server's pages are
    the "same site" and would get the cookie).  Following a link here stays possible."""
    site = headers.get("sec-fetch-site", "same-origin")
    navigating = headers.get("sec-fetch-mode") == "navigate" and method in SAFE_METHODS
    if site not in ("same-origin", "none") and not navigating:
        return False
    origin = headers.get("origin")
    return method in SAFE_METHODS or origin is None or urlsplit(origin).netloc == host


def _with_headers(send):
    async def sending(message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            added = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            if b"cache-control" not in present:
                added.append((b"cache-control", b"no-store"))
            message = {**message, "headers": [*message.get("headers", []), *added]}
        await send(message)

    return sending


async def _respond(send, status: int, text: str, extra: list) -> None:
    body = (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>clipsearch</title>'
        f"<p>{html.escape(text)}</p></html>"
    ).encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *SECURITY_HEADERS,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
