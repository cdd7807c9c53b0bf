"""Datasets and evaluation runs from the SDK.

    client.datasets.create("capitals", items=[{"inputs": {"input": "France"},
                                               "expected": "Paris"}])
    client.datasets.upload("capitals", Path("more.csv"))
    run = client.evals.run("route:support", "capitals", ["exact_match", "bleu"])
    run = client.evals.wait(run.id, on_progress=lambda r: print(r.done, "/", r.total))
    print(run.aggregates["scores"]["exact_match"])
    client.evals.compare(baseline.id, run.id)

With `AsyncClient` every method returns an awaitable (`wait` too)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from shipyard.evaluation.schemas import (
    DatasetPublic,
    ItemPage,
    ResultPage,
    RunPublic,
    VersionPublic,
)
from shipyard.sdk.calls import Call, Upload, _as

ACTIVE = ("queued", "running")
Export = Literal["jsonl", "openai", "dpo"]


def _seg(value: str) -> str:
    return quote(value, safe="")


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def target_of(target: str | dict[str, Any]) -> dict[str, Any]:
    """`"route:support"`, `"prompt:answer@3"`, `"release:app@production/support"`
    (`"prompt:answer@3 via support"` sends the rendered prompt to that route), or the
    API's dict as is; a bare name is a route."""
    if isinstance(target, dict):
        return target
    spec, _, model = target.partition(" via ")
    kind, sep, ref = spec.partition(":")
    if not sep:
        kind, ref = "route", spec
    out: dict[str, Any] = {"kind": kind, "ref": ref}
    if model:
        out["model"] = model.strip()
    return out


def scorers_of(scorers: Sequence[str | dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": s} if isinstance(s, str) else dict(s) for s in scorers]


class Datasets:
    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def list(self) -> Any:
        """-> list[DatasetPublic]"""
        return self._run(Call("GET", "/api/datasets", _as(list[DatasetPublic])))

    def get(self, name: str) -> Any:
        return self._run(Call("GET", f"/api/datasets/{_seg(name)}", _as(DatasetPublic)))

    def create(
        self,
        name: str,
        items: Sequence[dict[str, Any]] = (),
        *,
        description: str = "",
        message: str = "",
    ) -> Any:
        """A new dataset; with `items` its version 1 holds them -> DatasetPublic."""
        body = {"name": name, "description": description, "items": list(items), "message": message}
        return self._run(Call("POST", "/api/datasets", _as(DatasetPublic), json=body))

    def delete(self, name: str) -> Any:
        return self._run(Call("DELETE", f"/api/datasets/{_seg(name)}", lambda _: None))

    def change(
        self,
        name: str,
        *,
        add: Sequence[dict[str, Any]] = (),
        update: Sequence[dict[str, Any]] = (),
        remove: Sequence[str] = (),
        message: str = "",
        base_version: int | None = None,
    ) -> Any:
        """One new version: items added, updated (`{"id": ..., "expected": ...}`) and
        removed; `base_version` refuses (409) unless it is still the latest."""
        body = _clean(
            {
                "add": list(add),
                "update": list(update),
                "remove": list(remove),
                "message": message,
                "base_version": base_version,
            }
        )
        path = f"/api/datasets/{_seg(name)}/versions"
        return self._run(Call("POST", path, _as(VersionPublic), json=body))

    def add(self, name: str, items: Sequence[dict[str, Any]], message: str = "") -> Any:
        return self.change(name, add=items, message=message)

    def versions(self, name: str) -> Any:
        path = f"/api/datasets/{_seg(name)}/versions"
        return self._run(Call("GET", path, _as(list[VersionPublic])))

    def items(
        self, name: str, *, version: int | None = None, cursor: str | None = None, limit: int = 100
    ) -> Any:
        """One page of a version's items (default: the latest) -> ItemPage."""
        params = _clean({"version": version, "cursor": cursor, "limit": limit})
        path = f"/api/datasets/{_seg(name)}/items"
        return self._run(Call("GET", path, _as(ItemPage), params=params))

    def from_traces(
        self,
        name: str,
        trace_ids: Sequence[str],
        *,
        use_corrections: bool = True,
        message: str = "",
    ) -> Any:
        body = {
            "trace_ids": list(trace_ids),
            "use_corrections": use_corrections,
            "message": message,
        }
        path = f"/api/datasets/{_seg(name)}/from-traces"
        return self._run(Call("POST", path, _as(VersionPublic), json=body))

    def upload(
        self,
        name: str,
        path: Path,
        *,
        format: Literal["csv", "jsonl"] | None = None,
        create: bool = False,
        message: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> Any:
        """A CSV or JSONL file (the format from its suffix unless given) as one new
        version, or nothing (the error names the line) -> VersionPublic."""
        fmt = format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
        body = Upload(path, path.stat().st_size, progress)
        params = _clean({"format": fmt, "create": "true" if create else None, "message": message})
        ctype = "text/csv" if fmt == "csv" else "application/jsonl"
        call = Call(
            "POST",
            f"/api/dataset-uploads/{_seg(name)}",
            _as(VersionPublic),
            params=params,
            content=body,
            headers={"content-type": ctype},
        )
        return self._run(call)

    def export(self, name: str, *, format: Export = "jsonl", version: int | None = None) -> Any:
        """JSON lines: the items, OpenAI chat fine-tuning examples or DPO pairs -> str."""
        params = _clean({"format": format, "version": version})
        path = f"/api/datasets/{_seg(name)}/export"
        return self._run(Call("GET", path, str, params=params, text=True))


class Evals:
    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def run(
        self,
        target: str | dict[str, Any],
        dataset: str,
        scorers: Sequence[str | dict[str, Any]],
        *,
        dataset_version: int | None = None,
        params: dict[str, Any] | None = None,
        concurrency: int = 2,
        name: str = "",
        subject: str | None = None,
    ) -> Any:
        """Queue a run (the server's worker executes it) -> RunPublic; `wait` follows it."""
        body = _clean(
            {
                "target": target_of(target),
                "dataset": dataset,
                "dataset_version": dataset_version,
                "scorers": scorers_of(scorers),
                "params": params or {},
                "concurrency": concurrency,
                "name": name,
                "subject": subject,
            }
        )
        return self._run(Call("POST", "/api/evals/runs", _as(RunPublic), json=body))

    def get(self, run_id: str) -> Any:
        return self._run(Call("GET", f"/api/evals/runs/{_seg(run_id)}", _as(RunPublic)))

    def list(self, **filters: Any) -> Any:
        """Newest first (`dataset=`, `status=`, `subject=`, `limit=`) -> list[RunPublic]"""
        return self._run(
            Call("GET", "/api/evals/runs", _as(list[RunPublic]), params=_clean(filters))
        )

    def cancel(self, run_id: str) -> Any:
        path = f"/api/evals/runs/{_seg(run_id)}/cancel"
        return self._run(Call("POST", path, _as(RunPublic), json={}))

    def results(
        self,
        run_id: str,
        *,
        failed: bool = False,
        scorer: str | None = None,
        below: float | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Any:
        """One page of per-item results -> ResultPage."""
        params = _clean(
            {
                "failed": "true" if failed else None,
                "scorer": scorer,
                "below": below,
                "cursor": cursor,
                "limit": limit,
            }
        )
        path = f"/api/evals/runs/{_seg(run_id)}/results"
        return self._run(Call("GET", path, _as(ResultPage), params=params))

    def compare(self, *run_ids: str) -> Any:
        """Each run against the first, on the items they share -> dict."""
        params = {"runs": list(run_ids)}
        return self._run(Call("GET", "/api/evals/compare", lambda d: d, params=params))

    # Online evaluation ---------------------------------------------------------------

    def create_online(
        self,
        name: str,
        scorers: Sequence[str | dict[str, Any]],
        *,
        route: str = "",
        sample_rate: float = 0.1,
        interval_s: int = 60,
        filters: dict[str, Any] | None = None,
    ) -> Any:
        """A rule scoring a sample of a route's live traces on a schedule; the scores
        land as feedback on the traces (source `evaluation`) -> dict."""
        body = {
            "name": name,
            "route": route,
            "sample_rate": sample_rate,
            "scorers": scorers_of(scorers),
            "interval_s": interval_s,
            "filters": filters or {},
        }
        return self._run(Call("POST", "/api/evals/online", lambda d: d, json=body))

    def online(self) -> Any:
        """The workspace's online rules -> list[dict]."""
        return self._run(Call("GET", "/api/evals/online", lambda d: d))

    def update_online(self, name: str, **changes: Any) -> Any:
        """`enabled=`, `sample_rate=`, `interval_s=`, `scorers=` -> dict."""
        if "scorers" in changes:
            changes["scorers"] = scorers_of(changes["scorers"])
        path = f"/api/evals/online/{_seg(name)}"
        return self._run(Call("PATCH", path, lambda d: d, json=changes))

    def run_online(self, name: str) -> Any:
        """Score the rule's traces up to now -> the number scored."""
        path = f"/api/evals/online/{_seg(name)}/run"
        return self._run(Call("POST", path, lambda d: int(d["scored"]), json={}))

    def delete_online(self, name: str) -> Any:
        path = f"/api/evals/online/{_seg(name)}"
        return self._run(Call("DELETE", path, lambda _: None))

    def wait(
        self,
        run_id: str,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_progress: Callable[[RunPublic], None] | None = None,
    ) -> Any:
        """Poll until the run is completed, failed or cancelled -> RunPublic (with
        `AsyncClient`, an awaitable). `on_progress` sees each poll's run."""
        first = self.get(run_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        if inspect.isawaitable(first):

            async def go() -> RunPublic:
                run: RunPublic = await first
                while _going(run, on_progress, deadline):
                    await asyncio.sleep(poll)
                    run = await self.get(run_id)
                return run

            return go()
        run: RunPublic = first
        while _going(run, on_progress, deadline):
            time.sleep(poll)
            run = self.get(run_id)
        return run


def _going(
    run: RunPublic, on_progress: Callable[[RunPublic], None] | None, deadline: float | None
) -> bool:
    if on_progress is not None:
        on_progress(run)
    if run.status not in ACTIVE:
        return False
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"run {run.id} is still {run.status} ({run.done}/{run.total})")
    return True
