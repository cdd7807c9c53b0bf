"""The feedback panel on the trace page: every piece of feedback on the trace (thumbs,
score, label, comment, author, source, time) and a small form for a reviewer to add
thumbs, a score and a comment. The trace page loads it through `Platform.trace_panels`
(HTMX), so tracing never names this capability.

A form's input goes through the API's input model (`FeedbackIn`) and the API's own
`add` (the one `item(...)` builder, then the write-ahead log before anything is shown);
bad input is a message in the panel naming the field, audited as a failed attempt.
Comments are user input: the template escapes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from shipyard.errors import ShipyardError
from shipyard.feedback import store
from shipyard.feedback.api import feedback as api
from shipyard.feedback.schemas import FeedbackIn, FeedbackPublic
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import invalid
from shipyard.ui.router import _audit_ui_failure, templates

router = APIRouter(include_in_schema=False, prefix="/feedback")

SHOWN_WAIT_SECONDS = 2.0  # how long an added piece is waited for to be stored


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _stored(ctx: Ctx, trace_id: str) -> list[FeedbackPublic]:
    with ctx.platform.db.transaction() as s:
        rows = store.for_traces(s, workspace_id=ctx.workspace_id, trace_ids=[trace_id])
    return [api.public(r) for r in rows]


def _panel(
    ctx: Ctx,
    trace_id: str,
    items: list[FeedbackPublic],
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    added: str | None = None,
) -> Response:
    # 200 even with an error: HTMX swaps in only successful responses
    return templates.TemplateResponse(
        ctx.request,
        "feedback_panel.html",
        {
            "actor": ctx.actor,
            "trace_id": trace_id,
            "items": items,
            "when": _when,
            "can_add": ctx.actor.can("feedback:write"),
            "error": error,
            "form": form or {},
            "added": added,
        },
    )


def _trace_id(value: str) -> str:
    return value[:64].lower()


@router.get("/traces/{trace_id}", name="ui.trace_feedback")
async def panel(trace_id: str, ctx: Ctx = Authorized("feedback:read")) -> Response:
    trace_id = _trace_id(trace_id)
    items = await run_in_threadpool(_stored, ctx, trace_id)
    return _panel(ctx, trace_id, items)


def _body(trace_id: str, form: dict[str, str]) -> FeedbackIn:
    """The API's input model from the form (an empty field is not given)."""
    fields: dict[str, Any] = {k: v.strip() for k, v in form.items() if v.strip()}
    return FeedbackIn.model_validate({"trace_id": trace_id, "source": "reviewer", **fields})


def _add(ctx: Ctx, trace_id: str, form: dict[str, str]) -> Response:
    try:
        (added,) = api.add(ctx, [_body(trace_id, form)])
    except ValidationError as exc:
        err = invalid(exc)
        _audit_ui_failure(ctx, err)
        return _panel(ctx, trace_id, _stored(ctx, trace_id), error=err.detail, form=form)
    except ShipyardError as exc:  # the writer is full or starting (503)
        _audit_ui_failure(ctx, exc)
        return _panel(ctx, trace_id, _stored(ctx, trace_id), error=exc.detail, form=form)
    # durable already; wait (briefly) until it is stored, so that it is listed
    ctx.platform.services["feedback"].flush(SHOWN_WAIT_SECONDS)
    items = _stored(ctx, trace_id)
    if all(i.id != added for i in items):
        return _panel(ctx, trace_id, items, added="saved; it is listed in a moment")
    return _panel(ctx, trace_id, items, added="added")


@router.post("/traces/{trace_id}", name="ui.trace_feedback_add")
async def add(
    trace_id: str,
    thumbs: str = Form("", max_length=8),
    score: str = Form("", max_length=32),
    comment: str = Form("", max_length=10_000),
    ctx: Ctx = Authorized("feedback:write"),
) -> Response:
    form = {"thumbs": thumbs, "score": score, "comment": comment}
    trace_id = _trace_id(trace_id)
    response = await run_in_threadpool(_add, ctx, trace_id, form)
    if "hx-request" not in ctx.request.headers:  # a plain form post: back to the trace
        return RedirectResponse(f"/traces/{quote(trace_id, safe='')}", status_code=303)
    return response
