"""The SDK. Each resource describes its calls once (`Call`); `Client` runs them with a
sync httpx client and `AsyncClient` with an async one, so the two never drift apart."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from shipyard.audit.schemas import AuditEventPublic
from shipyard.identity.schemas import (
    AccountPublic,
    KeyCreated,
    KeyPublic,
    MePublic,
    UserPublic,
    WorkspacePublic,
)
from shipyard.sdk.calls import Call, ShipyardAPIError, Upload, _as
from shipyard.sdk.evaluation import Datasets, Evals
from shipyard.sdk.feedback import Feedback
from shipyard.sdk.pipelines import Pipelines
from shipyard.sdk.prompts import AsyncPrompts, PromptCache, Prompts, default_cache_dir
from shipyard.sdk.registry import Registry
from shipyard.sdk.retrieval import KnowledgeBases
from shipyard.sdk.training import FineTuning

T = TypeVar("T")


def _none(_: Any) -> None:
    return None


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = v.isoformat() if isinstance(v, datetime) else v
    return out


class Workspaces:
    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def list(self) -> Any:
        return self._run(Call("GET", "/api/workspaces", _as(list[WorkspacePublic])))

    def create(self, slug: str, name: str | None = None) -> Any:
        body = {"slug": slug, "name": name}
        return self._run(Call("POST", "/api/workspaces", _as(WorkspacePublic), json=body))


class Users:
    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def list(self) -> Any:
        return self._run(Call("GET", "/api/users", _as(list[UserPublic])))

    def create(
        self,
        email: str,
        password: str,
        *,
        name: str = "",
        role: str = "developer",
        platform_admin: bool = False,
    ) -> Any:
        body: dict[str, Any] = {"email": email, "password": password, "name": name, "role": role}
        if platform_admin:
            body["platform_admin"] = True
        return self._run(Call("POST", "/api/users", _as(UserPublic), json=body))

    def update(
        self, user: str, *, platform_admin: bool | None = None, is_active: bool | None = None
    ) -> Any:
        """Instance-wide account changes (platform administrators); `user` is an id or
        an e-mail."""
        body = _clean({"platform_admin": platform_admin, "is_active": is_active})
        return self._run(Call("PATCH", f"/api/users/{user}", _as(AccountPublic), json=body))

    def set_role(self, user_id: str, role: str) -> Any:
        path = f"/api/users/{user_id}/membership"
        return self._run(Call("PUT", path, _as(dict[str, str]), json={"role": role}))

    def remove(self, user_id: str) -> Any:
        return self._run(Call("DELETE", f"/api/users/{user_id}/membership", _none))


class Keys:
    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def list(self, *, include_revoked: bool = False) -> Any:
        params = {"include_revoked": str(include_revoked).lower()}
        return self._run(Call("GET", "/api/keys", _as(list[KeyPublic]), params=params))

    def create(
        self,
        name: str,
        *,
        role: str = "app",
        expires_at: datetime | None = None,
        platform_admin: bool = False,
    ) -> Any:
        body: dict[str, Any] = {
            "name": name,
            "role": role,
            "expires_at": expires_at.isoformat() if expires_at else None,
        }
        if platform_admin:
            body["platform_admin"] = True
        return self._run(Call("POST", "/api/keys", _as(KeyCreated), json=body))

    def revoke(self, key_id: str) -> Any:
        return self._run(Call("DELETE", f"/api/keys/{key_id}", _as(KeyPublic)))


class Audit:
    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def list(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> Any:
        params = _clean(
            {
                "actor": actor,
                "action": action,
                "outcome": outcome,
                "since": since,
                "before_id": before_id,
                "limit": limit,
            }
        )
        return self._run(Call("GET", "/api/audit", _as(list[AuditEventPublic]), params=params))


def resolve_credentials(url: str | None = None, api_key: str | None = None) -> tuple[str, str]:
    """--url/--key, then SHIPYARD_URL/SHIPYARD_API_KEY, then the saved credential file."""
    url = url or os.environ.get("SHIPYARD_URL")
    api_key = api_key or os.environ.get("SHIPYARD_API_KEY")
    if not (url and api_key):
        path = Path(os.environ.get("SHIPYARD_HOME", ".shipyard")) / "credentials.json"
        if path.is_file():
            saved = orjson.loads(path.read_bytes())
            url = url or saved.get("url")
            api_key = api_key or saved.get("api_key")
    if not url or not api_key:
        raise ShipyardAPIError(
            401,
            "No credentials",
            "pass --url and --key, set SHIPYARD_URL and SHIPYARD_API_KEY,"
            " or run `shipyard up` once",
        )
    return url.rstrip("/"), api_key


def _decode(call: Call[T], response: httpx.Response) -> T:
    if response.status_code >= 400:
        try:
            body = response.json()
            if isinstance(body.get("error"), dict):  # OpenAI's shape (`/v1`)
                title, detail = "Error", str(body["error"].get("message", response.text))
            else:
                title, detail = body.get("title", "Error"), body.get("detail", response.text)
        except ValueError:
            title, detail = response.reason_phrase, response.text[:200]
        raise ShipyardAPIError(response.status_code, title, detail)
    if call.text:
        return call.parse(response.text)
    if response.status_code == 204 or not response.content:
        return call.parse(None)
    return call.parse(response.json())


class _Resources:
    def _mount(self, run: Callable[[Call[Any]], Any]) -> None:
        self.workspaces = Workspaces(run)
        self.users = Users(run)
        self.keys = Keys(run)
        self.audit = Audit(run)
        self.registry = Registry(run)
        self.feedback = Feedback(run)
        self.datasets = Datasets(run)
        self.evals = Evals(run)
        self.kb = KnowledgeBases(run)
        self.pipelines = Pipelines(run)
        self.fine_tuning = FineTuning(run)


class Client(_Resources):
    """Synchronous client. `http_client` lets tests hand in an in-process transport;
    `cache_dir` is where `prompts.get` keeps its copies (`shipyard.sdk.prompts`)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        http_client: httpx.Client | None = None,
        timeout: float = 30.0,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.url, key = resolve_credentials(url, api_key)
        self._http = http_client or httpx.Client(base_url=self.url, timeout=timeout)
        self._headers = {"Authorization": f"Bearer {key}"}
        self._mount(self._run)
        cache = PromptCache(Path(cache_dir) if cache_dir else default_cache_dir(), self.url, key)
        self.prompts = Prompts(self._run, cache)

    def _run(self, call: Call[T]) -> T:
        content = call.content.chunks() if isinstance(call.content, Upload) else call.content
        r = self._http.request(
            call.method,
            self.url + call.path,
            json=call.json,
            content=content,
            files=call.files,
            data=call.data,
            params=call.params,
            headers={**call.headers, **self._headers},
        )
        return _decode(call, r)

    def me(self) -> MePublic:
        me: MePublic = self._run(Call("GET", "/api/me", _as(MePublic)))
        return me

    def get(self, path: str, **params: Any) -> Any:
        """Any GET of the API, decoded JSON (for resources without typed helpers yet)."""
        return self._run(Call("GET", path, _as(Any), params=_clean(params)))

    def post(self, path: str, body: Any, params: dict[str, Any] | None = None) -> Any:
        return self._run(Call("POST", path, _as(Any), json=body, params=params or {}))

    def export_audit(self, **params: Any) -> Iterator[AuditEventPublic]:
        with self._http.stream(
            "GET", self.url + "/api/audit/export", params=_clean(params), headers=self._headers
        ) as r:
            if r.status_code >= 400:
                r.read()
                _decode(Call("GET", "", _none), r)
            for line in r.iter_lines():
                if line.strip():
                    yield AuditEventPublic.model_validate_json(line)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Resources):
    """Asynchronous client: the same resources, each call awaited."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.url, key = resolve_credentials(url, api_key)
        self._http = http_client or httpx.AsyncClient(base_url=self.url, timeout=timeout)
        self._headers = {"Authorization": f"Bearer {key}"}
        self._mount(self._run)
        cache = PromptCache(Path(cache_dir) if cache_dir else default_cache_dir(), self.url, key)
        self.prompts = AsyncPrompts(self._run, cache)

    def _run(self, call: Call[T]) -> Awaitable[T]:
        async def go() -> T:
            body = call.content
            content = body.achunks() if isinstance(body, Upload) else body
            r = await self._http.request(
                call.method,
                self.url + call.path,
                json=call.json,
                content=content,
                files=call.files,
                data=call.data,
                params=call.params,
                headers={**call.headers, **self._headers},
            )
            return _decode(call, r)

        return go()

    async def me(self) -> MePublic:
        return await self._run(Call("GET", "/api/me", _as(MePublic)))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
