"""Online evaluation rules in the UI, under /evals/online: the rules with what they
scored, a form to add one (route, sample, interval, scorers with optional JSON
configuration), and per rule: run now, pause or resume, delete. Changes go through the
API's functions (the same checks and audit); a refusal is a message on the page."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.responses import Response

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.evaluation.api import online as online_api
from shipyard.evaluation.online import OnlineRuleIn, OnlineRuleUpdate
from shipyard.evaluation.scorers import BUILTIN
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import invalid
from shipyard.ui.router import _audit_ui_failure, render

router = APIRouter(include_in_schema=False, prefix="/evals")


def _page(ctx: Ctx, *, error: str | None = None, message: str | None = None) -> Response:
    rules = online_api.list_rules(ctx)
    return render(
        ctx, "eval_online.html", "eval_online", status=400 if error else 200, rules=rules,
        scorers=BUILTIN, error=error, message=message,
    )  # fmt: skip


@router.get("/online", name="ui.eval_online")
def online_page(ctx: Ctx = Authorized("evals:read")) -> Response:
    return _page(ctx)


def rule_from_form(form: dict[str, Any], picked: list[str]) -> OnlineRuleIn:
    scorers = []
    for name in picked:
        raw = str(form.get(f"config.{name}", "")).strip()
        try:
            config = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"config.{name}: not JSON ({exc.msg})") from None
        scorers.append({"name": name, "config": config})
    values = {
        "name": form.get("name", ""),
        "route": form.get("route", ""),
        "sample_rate": form.get("sample_rate") or 0.1,
        "interval_s": form.get("interval_s") or 60,
        "scorers": scorers,
    }
    try:
        return OnlineRuleIn.model_validate(values)
    except ValidationError as exc:
        raise invalid(exc) from None


async def _change(ctx: Ctx, work: Any, done: str) -> Response:
    try:
        result = await work()
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        detail = exc.detail
        return await run_in_threadpool(lambda: _page(ctx, error=detail))
    message = done.format(result=result)
    return await run_in_threadpool(lambda: _page(ctx, message=message))


@router.post("/online", name="ui.eval_online_create")
async def create(request: Request, ctx: Ctx = Authorized("evals:manage")) -> Response:
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    picked = [v for v in raw.getlist("scorer") if isinstance(v, str)]

    async def work() -> str:
        body = rule_from_form(form, picked)
        return (await run_in_threadpool(online_api.create_rule, body, ctx)).name

    return await _change(ctx, work, "Online rule {result} added.")


@router.post("/online/{name}/{action}", name="ui.eval_online_action")
async def action(name: str, action: str, ctx: Ctx = Authorized("evals:manage")) -> Response:
    async def work() -> str:
        if action == "run":
            scored = await online_api.run_rule(name, ctx)
            return f"{name}: {scored.scored} traces scored"
        if action in {"pause", "resume"}:
            body = OnlineRuleUpdate(enabled=action == "resume")
            await run_in_threadpool(online_api.update_rule, name, body, ctx)
            return f"{name}: {'resumed' if action == 'resume' else 'paused'}"
        if action == "delete":
            await run_in_threadpool(online_api.delete_rule, name, ctx)
            return f"{name}: deleted"
        raise InvalidInput(f"'{action[:20]}' is not run, pause, resume or delete")

    return await _change(ctx, work, "{result}.")
