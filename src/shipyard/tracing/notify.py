"""Alert notifications to webhooks, with the outbound-address rules of providers.

Two formats: `json` (the event as JSON, signed: `X-Shipyard-Signature: sha256=<hex>`,
the HMAC-SHA256 of the exact body under the rule's secret) and `slack` (a
Slack-compatible `{"text": ...}`, signed the same way). The body carries the event's
time, so a receiver can refuse a replay.

Addresses: a URL naming an internal address literally is refused before connecting, a
name is resolved by `CheckedResolver` (internal answers dropped: DNS rebinding) unless
the rule has `allow_internal`; redirects are never followed. A failure (connection,
timeout, 429, 5xx) is retried `ATTEMPTS` times in all with exponential backoff; another
4xx is final."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from shipyard.errors import InvalidInput
from shipyard.gateway.providers.http import CheckedResolver
from shipyard.gateway.providers.urlcheck import check_base_url

ATTEMPTS = 3
BACKOFF = 0.5  # seconds before the second attempt; doubled each time
TIMEOUT = 10.0
SIGNATURE = "X-Shipyard-Signature"


@dataclass(frozen=True)
class Notice:
    event: str  # "firing", "resolved" or "test"
    event_id: str
    workspace_id: str
    rule_id: str
    rule_name: str
    metric: str
    comparator: str
    threshold: float
    window_seconds: int
    for_seconds: int
    filter: dict[str, str]
    value: float | None
    at: datetime
    targets: tuple[tuple[str, str], ...]  # (url, format)
    secret: str = field(repr=False)
    allow_internal: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "event_id": self.event_id,
            "at": self.at.isoformat(),
            "workspace_id": self.workspace_id,
            "rule": {
                "id": self.rule_id,
                "name": self.rule_name,
                "metric": self.metric,
                "comparator": self.comparator,
                "threshold": self.threshold,
                "window_seconds": self.window_seconds,
                "for_seconds": self.for_seconds,
                "filter": self.filter,
            },
            "value": self.value,
        }

    def text(self) -> str:
        label = {"firing": "FIRING", "resolved": "RESOLVED", "test": "TEST"}[self.event]
        value = "no data" if self.value is None else f"{self.value:g}"
        where = " ".join(f"{k}={v}" for k, v in sorted(self.filter.items()))
        return (
            f"[{label}] {self.rule_name}: {self.metric} = {value} "
            f"(alert when {self.comparator} {self.threshold:g} over {self.window_seconds}s"
            f"{', ' + where if where else ''})"
        )

    def body(self, fmt: str) -> bytes:
        return orjson.dumps({"text": self.text()} if fmt == "slack" else self.payload())


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    event: str
    url: str
    status: str  # "delivered" or "failed"
    attempts: int
    code: int | None
    error: str
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "url": self.url,
            "status": self.status,
            "attempts": self.attempts,
            "code": self.code,
            "error": self.error,
            "at": self.at.isoformat(),
        }


class Notifier:
    """One pooled session for checked targets, one for `allow_internal` ones."""

    def __init__(self, *, attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> None:
        self.attempts = attempts
        self.backoff = backoff
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def _session(self, internal: bool) -> aiohttp.ClientSession:
        found = self._sessions.get(internal)
        if found is None or found.closed:
            connector = aiohttp.TCPConnector(
                limit=64, resolver=None if internal else CheckedResolver()
            )
            found = self._sessions[internal] = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
            )
        return found

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def send(self, notice: Notice) -> list[Delivery]:
        return list(
            await asyncio.gather(*(self._one(notice, url, fmt) for url, fmt in notice.targets))
        )

    async def _one(self, notice: Notice, url: str, fmt: str) -> Delivery:
        return await self.deliver(
            url,
            notice.body(fmt),
            secret=notice.secret,
            event=notice.event,
            allow_internal=notice.allow_internal,
        )

    async def deliver(
        self,
        url: str,
        body: bytes,
        *,
        secret: str,
        event: str,
        allow_internal: bool = False,
        agent: str = "Shipyard-Alerts",
    ) -> Delivery:
        """POST one signed JSON body to one webhook, with the retries and address rules
        above (alert notices and registry events both go through here)."""
        from shipyard.store import utcnow

        headers = {
            "Content-Type": "application/json",
            "User-Agent": agent,
            SIGNATURE: sign(secret, body),
            "X-Shipyard-Event": event,
        }
        if not allow_internal:
            try:  # a literal address reaches no resolver: checked here
                check_base_url(url, resolve=False)
            except InvalidInput as exc:
                return Delivery(event, url, "failed", 0, None, _refused(exc), utcnow())
        code: int | None = None
        error = ""
        attempt = 0
        while attempt < self.attempts:
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            attempt += 1
            try:
                async with self._session(allow_internal).post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    code = resp.status
                    await resp.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                code, error = None, f"cannot reach the webhook: {exc.__class__.__name__}: {exc}"
                continue
            if 200 <= code < 300:
                return Delivery(event, url, "delivered", attempt, code, "", utcnow())
            if 300 <= code < 400:
                error = f"answered {code}, a redirect (not followed)"
                break
            error = f"answered {code}"
            if code < 500 and code != 429:
                break
        return Delivery(event, url, "failed", attempt, code, error[:500], utcnow())


def _refused(exc: InvalidInput) -> str:
    return "refused: " + exc.detail.removeprefix("base_url: ")
