"""Shared HTTP plumbing for remote providers: one pooled aiohttp session per provider,
SSE line reading, error classification. Keeps each vendor module about its wire format."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from shipyard.errors import ErrorClass, UpstreamError, classify_status
from shipyard.gateway.config.specs import Deployment, ProviderSpec, Timeouts


class HttpConnection:
    def __init__(
        self, spec: ProviderSpec, headers: dict[str, str], *, unix_socket: str | None = None
    ) -> None:
        self.spec = spec
        self._unix = unix_socket  # a local server Shipyard started (llama_server.py)
        self._headers = {"Content-Type": "application/json", **dict(spec.headers), **headers}
        self._session: aiohttp.ClientSession | None = None
        self._refused = _refusal(spec)
        # a deployment's timeouts as aiohttp's, built once (they are immutable)
        self._timeouts: dict[tuple[Timeouts, bool], aiohttp.ClientTimeout] = {}

    def _timeout(self, dep: Deployment, *, stream: bool = False) -> aiohttp.ClientTimeout:
        found = self._timeouts.get((dep.timeouts, stream))
        if found is None:
            if len(self._timeouts) > 1000:
                self._timeouts.clear()
            found = self._timeouts[(dep.timeouts, stream)] = client_timeout(
                dep.timeouts, stream=stream
            )
        return found

    def _failure(self, status: int, raw: bytes, retry_after: str | None) -> UpstreamError:
        # secrets are scrubbed centrally (Executor -> UpstreamError.scrub)
        return failure_from(status, raw, retry_after)

    def session(self) -> aiohttp.ClientSession:
        if self._refused is not None:
            raise UpstreamError(self._refused, error_class=ErrorClass.connect)
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self._unix is not None:
                # a new connection per call (cheap on a Unix socket): llama-server may
                # close a kept-alive one after a stream without saying so
                connector = aiohttp.UnixConnector(self._unix, limit=512, force_close=True)
            else:
                resolver = None if self.spec.options.get("allow_internal") else CheckedResolver()
                connector = aiohttp.TCPConnector(
                    limit=512, ttl_dns_cache=300, keepalive_timeout=60, resolver=resolver
                )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def post_json(
        self, url: str, body: Any, dep: Deployment, params: dict[str, str] | None = None
    ) -> Any:
        try:
            async with self.session().post(
                url,
                data=orjson.dumps(body),
                timeout=self._timeout(dep),
                params=params,
                allow_redirects=False,
            ) as resp:
                _refuse_redirect(resp.status)
                raw = await resp.read()
                if resp.status >= 400:
                    raise self._failure(resp.status, raw, resp.headers.get("Retry-After"))
        except Exception as exc:
            raise _transport_failure(exc) from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                "upstream sent a response that is not JSON", error_class=ErrorClass.malformed
            ) from None

    async def stream_sse(
        self, url: str, body: Any, dep: Deployment, params: dict[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        """Yield each SSE `data:` payload. The first token must come within
        `first_token` seconds; a stream that stops without its end marker raises."""
        try:
            async with self.session().post(
                url,
                data=orjson.dumps(body),
                timeout=self._timeout(dep, stream=True),
                params=params,
                allow_redirects=False,
            ) as resp:
                _refuse_redirect(resp.status)
                if resp.status >= 400:
                    raw = await resp.read()
                    raise self._failure(resp.status, raw, resp.headers.get("Retry-After"))
                async for line in resp.content:
                    if line.startswith(b"data:"):
                        yield line[5:].strip()
        except Exception as exc:
            raise _transport_failure(exc) from None


def _refusal(spec: ProviderSpec) -> str | None:
    """Why this provider may not connect at all: a base URL naming an internal address
    literally (IP literals reach no resolver, so CheckedResolver cannot see them; a row
    stored before these checks, or written around them, is caught here)."""
    from shipyard.errors import InvalidInput
    from shipyard.gateway.providers.urlcheck import check_base_url

    if spec.options.get("allow_internal") or not spec.base_url:
        return None
    try:
        check_base_url(spec.base_url, resolve=False)
    except InvalidInput:
        return f"provider '{spec.name}' points at an internal address; it is not called"
    return None


def _refuse_redirect(status: int) -> None:
    """Provider calls follow no redirects: a redirect is re-checked by nobody and would
    carry the provider's auth headers (`x-api-key`, `api-key`...) to another host."""
    if 300 <= status < 400:
        raise UpstreamError(
            f"upstream answered {status}, a redirect; Shipyard follows no redirects "
            "(set the provider's base_url to the final address)",
            error_class=ErrorClass.server_error,
            upstream_status=status,
        )


def client_timeout(timeouts: Timeouts, *, stream: bool) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=timeouts.total,
        sock_connect=timeouts.connect,
        # the first token bounds a stream's silence; a unary reply arrives whole, so only
        # its total applies (and aiohttp re-arms no read timer on every chunk: ~9% of a
        # call's CPU, measured)
        sock_read=timeouts.first_token if stream else None,
    )


def _transport_failure(exc: Exception) -> Exception:
    """Transport errors as upstream failures with their class; others unchanged."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return UpstreamError("upstream timed out", error_class=ErrorClass.timeout)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError("upstream stream broke off", error_class=ErrorClass.server_error)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return UpstreamError(
            f"cannot reach upstream: {exc.__class__.__name__}", error_class=ErrorClass.connect
        )
    return exc


class CheckedResolver(aiohttp.ThreadedResolver):
    """Resolves like aiohttp, then drops internal addresses (urlcheck.forbidden_ip): a
    name that passed the check when it was configured cannot be re-pointed later (DNS
    rebinding). IP literals never reach a resolver; they are checked at configuration."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        from shipyard.gateway.providers.urlcheck import forbidden_ip

        found = await super().resolve(host, port, family)
        allowed = [r for r in found if not forbidden_ip(r["host"])]
        if not allowed:
            raise OSError(f"{host} resolves only to internal addresses")
        return allowed


_RAW_TEXT = 16_384  # of a non-JSON error body; scrub() redacts a secret cut off here


def failure_from(status: int, raw: bytes, retry_after: str | None) -> UpstreamError:
    message = _message(raw)
    wait = None
    if retry_after:
        try:
            wait = max(0.0, float(retry_after))
        except ValueError:
            wait = None
    return UpstreamError(
        f"upstream answered {status}: {message}",  # truncated after redaction (executor)
        error_class=classify_status(status, message),
        upstream_status=status,
        retry_after=wait,
    )


def _message(raw: bytes) -> str:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # cut after the secrets are redacted (UpstreamError.scrub), not here
        return raw[:_RAW_TEXT].decode("utf-8", "replace")
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            parts = [
                str(err.get("message", "")),
                str(err.get("code") or ""),
                str(err.get("type") or ""),
            ]
            return " ".join(p for p in parts if p).strip() or "error"
        return str(err)
    return "error"
