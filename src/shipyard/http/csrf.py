"""Login CSRF: a page on another site must not log a browser into Shipyard (as the
attacker, to read what the victim then does there).

Two checks, both on `POST /login`:

- Origin: the `Origin` header (or, without it, the `Referer`) must name this server,
  i.e. equal the `Host` the browser sent (which `EdgeCheck` has already matched against
  `allowed_hosts`); `Origin: null` is refused. Behind a proxy, pass the Host through.
- A double-submit token: `GET /login` sets it as a `SameSite=Strict`, HttpOnly cookie
  scoped to `/login` and embeds the same value in the form; the POST must carry both,
  equal. A request with neither Origin nor Referer passes on the token alone.

Once logged in, state changes carry the session's own token (`X-CSRF-Token`)."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

LOGIN_COOKIE = "shipyard_login_csrf"
FIELD = "csrf_token"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _netloc(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return None
    if port is not None and str(port) != _DEFAULT_PORTS[parts.scheme]:
        return f"{host}:{port}"
    return host


def _host(request: Request) -> str:
    host = request.headers.get("host", "").lower()
    for port in _DEFAULT_PORTS.values():
        if host.endswith(f":{port}") and not host.endswith("]"):
            return host[: -len(port) - 1]
    return host


def origin_problem(request: Request) -> str | None:
    """Why the request's Origin (or Referer) is not this server; None when it is, or
    when the browser sent neither."""
    origin = request.headers.get("origin")
    source = origin if origin is not None else request.headers.get("referer")
    if source is None:
        return None
    if source.strip() == "null":
        return "the login form was sent from an opaque origin"
    if _netloc(source.strip()) != _host(request):
        return "the login form was sent from another site"
    return None


def login_token(request: Request) -> str:
    """The token of this browser's login form: the cookie's, or a new one."""
    current = request.cookies.get(LOGIN_COOKIE, "")
    return current if 32 <= len(current) <= 64 else secrets.token_urlsafe(32)


def set_login_cookie(response: Response, token: str, *, secure: bool) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=24 * 3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def login_problem(request: Request, sent: str) -> str | None:
    """Why this login POST may be forged; None when it passes both checks."""
    problem = origin_problem(request)
    if problem is not None:
        return problem
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        return "the login form expired; try again"
    return None
