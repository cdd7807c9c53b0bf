"""Registry prompts from the SDK: `client.prompts.get("support-answer@production")`
returns a `Prompt` that renders locally (the same sandbox as the server), with a local
cache so an application keeps working while the server is briefly away.

The cache. Every successful `get` writes the resolved version to the cache directory:
the `cache_dir` argument of the client, else `SHIPYARD_PROMPT_CACHE`, else
`$XDG_CACHE_HOME/shipyard/prompts` (`~/.cache/shipyard/prompts`). Copies are kept per
*scope*, a folder named by a hash of the server URL and the API key's id (`sy-<id>-...`;
a key belongs to one workspace, so this keeps workspaces apart without a request to
`/api/me`, and works offline; two keys of one workspace keep separate copies), and per
reference as written (`name`, `name@3`, `name@production`). On a connection error or a
5xx, `get` returns the cached copy, marked `from_cache=True`; a 4xx (a 404: the prompt or
alias is gone, a 403) is raised, never answered from the cache. With `max_age=S`, a copy
written less than S seconds ago is used without asking the server at all.

Files are written atomically (a temporary file, fsync, rename), mode 0600, in folders of
mode 0700; no symlink is followed inside the cache directory (the scope folder and the
files are opened with O_NOFOLLOW, relative to the scope's descriptor), and a file that
cannot be read or parsed is a miss, never an error."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from shipyard.registry import templates
from shipyard.registry.schemas import AssetPublic, VersionPublic
from shipyard.sdk.calls import Call, ShipyardAPIError, _as

log = logging.getLogger(__name__)
_KEY = re.compile(r"^sy-([A-Za-z0-9_]+)-")
MAX_CACHE_FILE = 4 * 1024 * 1024


def split_ref(ref: str) -> tuple[str, str]:
    """`name[@selector]` as (name, selector); the selector defaults to `latest`."""
    name, _, selector = ref.partition("@")
    return name, selector or "latest"


def _seg(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True)
class Prompt:
    """One resolved prompt version, rendered locally with `render` or `messages`."""

    name: str
    version: int
    template: templates.PromptTemplate = field(repr=False)
    model: str | None
    params: dict[str, Any]
    aliases: list[str] = field(default_factory=list)
    from_cache: bool = False

    @property
    def ref(self) -> str:
        """The exact version: `name@v3`."""
        return f"{self.name}@v{self.version}"

    @classmethod
    def of(cls, version: VersionPublic, *, from_cache: bool = False) -> Prompt:
        body = version.body
        return cls(
            name=version.name,
            version=version.number,
            template=templates.parse_template(
                {"template": body.get("template"), "variables": body.get("variables")}
            ),
            model=body.get("model"),
            params=dict(body.get("params") or {}),
            aliases=list(version.aliases),
            from_cache=from_cache,
        )

    def render(
        self, variables: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> templates.Rendered:
        """Render with `variables` (a dict, keywords, or both); raises InvalidInput
        naming `variables.<name>`, as the server would."""
        return templates.render(self.template, {**(variables or {}), **kwargs})

    def messages(
        self, variables: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[dict[str, str]]:
        """OpenAI-ready chat messages (a text template is one user message)."""
        out = self.render(variables, **kwargs)
        if out.messages is not None:
            return out.messages
        return [{"role": "user", "content": out.text or ""}]


def default_cache_dir() -> Path:
    configured = os.environ.get("SHIPYARD_PROMPT_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "shipyard" / "prompts"


def write_in(dir_fd: int, name: str, data: bytes, *, mode: int) -> None:
    """Write `name` in the folder `dir_fd` atomically: a new temporary file (never
    through a symlink), fsync, then a rename over `name` (a symlink there is replaced,
    not followed)."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(tmp, flags, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """`write_in` for a path (its folder must exist)."""
    d = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        write_in(d, path.name, data, mode=mode)
    finally:
        os.close(d)


class PromptCache:
    """Resolved versions on disk, per server and key (see the module's docstring)."""

    def __init__(self, root: Path, url: str, api_key: str) -> None:
        found = _KEY.match(api_key)
        who = found[1] if found else hashlib.sha256(api_key.encode()).hexdigest()
        self.root = root
        self.scope = hashlib.sha256(f"{url.rstrip('/')}\n{who}".encode()).hexdigest()[:32]

    def filename(self, ref: str) -> str:
        return hashlib.sha256(ref.encode()).hexdigest()[:40] + ".json"

    def path(self, ref: str) -> Path:
        return self.root / self.scope / self.filename(ref)

    @contextlib.contextmanager
    def _dir(self, create: bool) -> Iterator[int]:
        if create:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.root / self.scope, mode=0o700)
        fd = os.open(self.root / self.scope, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            yield fd
        finally:
            os.close(fd)

    def write(self, ref: str, version: VersionPublic) -> None:
        data = orjson.dumps(
            {"ref": ref, "saved_at": time.time(), "version": version.model_dump(mode="json")}
        )
        try:
            with self._dir(create=True) as d:
                write_in(d, self.filename(ref), data, mode=0o600)
        except OSError as exc:  # a cache that cannot be written never fails a get
            log.warning("prompt cache: cannot write %s: %s", ref, exc)

    def read(self, ref: str, max_age: float | None = None) -> VersionPublic | None:
        """The cached version of `ref` (no older than `max_age` seconds), or None."""
        try:
            with self._dir(create=False) as d:
                fd = os.open(self.filename(ref), os.O_RDONLY | os.O_NOFOLLOW, dir_fd=d)
                with os.fdopen(fd, "rb") as f:
                    raw = f.read(MAX_CACHE_FILE + 1)
            if len(raw) > MAX_CACHE_FILE:
                return None
            saved = orjson.loads(raw)
            if saved.get("ref") != ref:
                return None
            if max_age is not None and not time.time() - float(saved["saved_at"]) < max_age:
                return None
            return VersionPublic.model_validate(saved["version"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


def _unavailable(exc: BaseException) -> bool:
    """A failure the cache may answer for: the server unreachable, or a 5xx."""
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, ShipyardAPIError) and exc.status >= 500


class _PromptCalls:
    """The prompt routes, described once (`Call`) for the sync and the async client."""

    def __init__(self, run: Callable[[Call[Any]], Any], cache: PromptCache) -> None:
        self._run = run
        self.cache = cache

    def push(
        self,
        name: str,
        template: dict[str, Any],
        *,
        variables: dict[str, Any] | None = None,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        message: str = "",
        metadata: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> Any:
        """A new version (the prompt is created on its first push) -> VersionPublic."""
        body = {
            "template": template,
            "variables": variables,
            "model": model,
            "params": params or {},
            "message": message,
            "metadata": metadata or {},
            "tags": tags or {},
        }
        path = f"/api/registry/prompts/{_seg(name)}/versions"
        return self._run(Call("POST", path, _as(VersionPublic), json=body))

    def resolve(self, ref: str) -> Any:
        """`name@selector` now, from the server (no cache) -> VersionPublic."""
        return self._run(self._resolve(ref))

    def _resolve(self, ref: str) -> Call[VersionPublic]:
        name, selector = split_ref(ref)
        path = f"/api/registry/prompts/{_seg(name)}/resolve/{_seg(selector)}"
        return Call("GET", path, _as(VersionPublic))

    def list(self) -> Any:
        return self._run(Call("GET", "/api/registry/prompts", _as(list[AssetPublic])))

    def render_remote(self, ref: str, variables: dict[str, Any] | None = None) -> Any:
        """Render on the server -> {prompt, version, rendered, model, params}."""
        name, selector = split_ref(ref)
        body = {"version": selector, "variables": variables or {}}
        path = f"/api/registry/prompts/{_seg(name)}/render"
        return self._run(Call("POST", path, _as(dict[str, Any]), json=body))

    def diff(self, name: str, a: int, b: int) -> Any:
        """The server's unified diff between versions a and b -> {a, b, diff: [lines]}."""
        path = f"/api/registry/prompts/{_seg(name)}/diff"
        return self._run(Call("GET", path, _as(dict[str, Any]), params={"a": a, "b": b}))

    def set_alias(self, name: str, alias: str, version: int) -> Any:
        """Point a custom alias at a version (environments move by promotion)."""
        path = f"/api/registry/prompts/{_seg(name)}/aliases/{_seg(alias)}"
        return self._run(Call("PUT", path, _as(AssetPublic), json={"version": version}))

    def _cached(self, ref: str, max_age: float | None) -> Prompt | None:
        found = self.cache.read(ref, max_age)
        return None if found is None else Prompt.of(found, from_cache=True)


class Prompts(_PromptCalls):
    def get(self, ref: str, *, max_age: float | None = None) -> Prompt:
        """The prompt version `ref` names (`name`, `name@3`, `name@production`),
        cached; see the module's docstring for when the cache answers."""
        if max_age is not None and (fresh := self._cached(ref, max_age)) is not None:
            return fresh
        try:
            version: VersionPublic = self._run(self._resolve(ref))
        except (httpx.TransportError, ShipyardAPIError) as exc:
            if _unavailable(exc) and (cached := self._cached(ref, None)) is not None:
                return cached
            raise
        self.cache.write(ref, version)
        return Prompt.of(version)


class AsyncPrompts(_PromptCalls):
    async def get(self, ref: str, *, max_age: float | None = None) -> Prompt:
        """As `Prompts.get`, awaited."""
        if max_age is not None and (fresh := self._cached(ref, max_age)) is not None:
            return fresh
        try:
            pending: Awaitable[VersionPublic] = self._run(self._resolve(ref))
            version = await pending
        except (httpx.TransportError, ShipyardAPIError) as exc:
            if _unavailable(exc) and (cached := self._cached(ref, None)) is not None:
                return cached
            raise
        self.cache.write(ref, version)
        return Prompt.of(version)
