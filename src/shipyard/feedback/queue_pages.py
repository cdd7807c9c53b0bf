"""Review queue pages: the queues with their progress and agreement, and the review
workspace (a queue's next item: the trace's input and output, a form; keyboard
shortcuts j/n save and next, u/d thumbs, 1-5 score, c correction, s skip).

The workspace loads its item with an HTMX POST (`next` assigns it to the reviewer);
the form posts through the API's own `review` and `skip` (the one feedback builder,
the write-ahead log); bad input is named above the form, audited as a failed attempt,
and marks nothing. What traces hold is user input: the templates escape it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.responses import Response

from shipyard.errors import ShipyardError
from shipyard.feedback import queues
from shipyard.feedback.api import queues as api
from shipyard.feedback.schemas import ReviewIn
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import invalid
from shipyard.ui.router import _audit_ui_failure, render, templates

router = APIRouter(include_in_schema=False, prefix="/feedback/queues")


def _listing(ctx: Ctx) -> list[dict[str, Any]]:
    with ctx.platform.db.transaction() as s:
        rows = queues.list_queues(s, workspace_id=ctx.workspace_id)
        done = queues.progress(s, [r.id for r in rows])
        return [{"q": r, "p": done[r.id], "a": queues.agreement(s, r)} for r in rows]


@router.get("", name="ui.review_queues")
async def queue_list(ctx: Ctx = Authorized("feedback:review")) -> Response:
    shown = await run_in_threadpool(_listing, ctx)
    page = "feedback_queues.html"
    return await run_in_threadpool(render, ctx, page, "review_queues", queues=shown)


def _queue(ctx: Ctx, queue_id: str) -> Any:
    with ctx.platform.db.transaction() as s:
        return queues.get_queue(s, workspace_id=ctx.workspace_id, queue_id=queue_id)


@router.get("/{queue_id}/review", name="ui.review_workspace")
async def workspace(queue_id: str, ctx: Ctx = Authorized("feedback:review")) -> Response:
    queue = await run_in_threadpool(_queue, ctx, queue_id)
    page = "feedback_review.html"
    return await run_in_threadpool(render, ctx, page, "review_queues", queue=queue)


def _trace(ctx: Ctx, trace_id: str) -> dict[str, str]:
    """The trace's input and output: its first span with an input, and its last output."""
    trace_store = getattr(ctx.platform.services.get("tracing"), "store", None)
    shown = {"input": "", "output": "", "route": "", "model": ""}
    if trace_store is None:
        return shown
    summary = trace_store.trace(ctx.workspace_id, trace_id)
    if summary is not None:
        shown.update(route=summary.route, model=summary.model)
    for span in trace_store.trace_spans(ctx.workspace_id, trace_id, limit=200).items:
        shown["input"] = shown["input"] or span.input
        shown["output"] = span.output or shown["output"]
    return shown


def _item(
    ctx: Ctx, queue_id: str, *, error: str | None = None, form: dict[str, str] | None = None
) -> Response:
    """The reviewer's current item (the next one, assigned to them) as a fragment."""
    with ctx.platform.db.transaction() as s:
        queue = queues.get_queue(s, workspace_id=ctx.workspace_id, queue_id=queue_id)
        found = queues.next_item(s, queue, reviewer=ctx.actor.ref)
        item = api.item_public(found) if found is not None else None
        progress = queues.progress(s, [queue.id])[queue.id]
    trace = _trace(ctx, item.trace_id) if item is not None else {}
    return templates.TemplateResponse(
        ctx.request,
        "feedback_review_item.html",
        {
            "actor": ctx.actor,
            "queue": queue,
            "item": item,
            "trace": trace,
            "progress": progress,
            "error": error,
            "form": form or {},
        },
    )


@router.post("/{queue_id}/next", name="ui.review_next")
async def next_item(queue_id: str, ctx: Ctx = Authorized("feedback:review")) -> Response:
    return await run_in_threadpool(_item, ctx, queue_id)


def _review(ctx: Ctx, queue_id: str, item_id: str, form: dict[str, str]) -> Response:
    fields: dict[str, Any] = {k: v.strip() for k, v in form.items() if v.strip()}
    try:
        api.review(ctx, queue_id, item_id, ReviewIn.model_validate(fields))
    except ValidationError as exc:
        err = invalid(exc)
        _audit_ui_failure(ctx, err)
        return _item(ctx, queue_id, error=err.detail, form=form)
    except ShipyardError as exc:  # taken by someone else, done already, writer full
        _audit_ui_failure(ctx, exc)
        return _item(ctx, queue_id, error=exc.detail, form=form)
    return _item(ctx, queue_id)


@router.post("/{queue_id}/items/{item_id}/review", name="ui.review_submit")
async def review(
    queue_id: str,
    item_id: str,
    thumbs: str = Form("", max_length=8),
    score: str = Form("", max_length=32),
    label: str = Form("", max_length=128),
    comment: str = Form("", max_length=10_000),
    correction: str = Form("", max_length=100_000),
    ctx: Ctx = Authorized("feedback:review"),
) -> Response:
    form = {
        "thumbs": thumbs,
        "score": score,
        "label": label,
        "comment": comment,
        "correction": correction,
    }
    return await run_in_threadpool(_review, ctx, queue_id, item_id, form)


def _skip(ctx: Ctx, queue_id: str, item_id: str) -> Response:
    try:
        api.skip(ctx, queue_id, item_id)
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        return _item(ctx, queue_id, error=exc.detail)
    return _item(ctx, queue_id)


@router.post("/{queue_id}/items/{item_id}/skip", name="ui.review_skip")
async def skip(queue_id: str, item_id: str, ctx: Ctx = Authorized("feedback:review")) -> Response:
    return await run_in_threadpool(_skip, ctx, queue_id, item_id)
