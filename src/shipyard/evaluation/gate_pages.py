"""The quality-gate configuration page, per environment, under /evals/gates: what
promoting into each environment needs from evaluation (a dataset version, scorer
thresholds, latency, cost, error rate, not worse than the current version), set through
the registry's policy (the same function and audit as `PUT /api/registry/policies/...`).
A refusal is a message on the page, audited as a failed attempt."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.evaluation import datasets
from shipyard.http.deps import Authorized, Ctx
from shipyard.identity import service as identity
from shipyard.registry import promotion
from shipyard.ui.router import _audit_ui_failure, render

router = APIRouter(include_in_schema=False, prefix="/evals")
NUMBERS = ("max_latency_p95_ms", "max_cost_per_item_usd", "max_error_rate")


def _page(ctx: Ctx, *, error: str | None = None, message: str | None = None) -> Response:
    with ctx.platform.db.transaction() as s:
        envs = []
        for env in identity.environments(s, workspace_id=ctx.workspace_id):
            p = promotion.policy(s, workspace_id=ctx.workspace_id, environment=env)
            gate = dict(p.gates.get("evaluation") or {})
            envs.append({"name": env, "four_eyes": p.four_eyes, "gates": p.gates, "gate": gate})
        names = [d.name for d in datasets.listing(s, ctx.workspace_id)]
    status = 400 if error else 200
    return render(
        ctx, "eval_gates.html", "eval_gates", status=status, envs=envs, datasets=names,
        error=error, message=message,
    )  # fmt: skip


@router.get("/gates", name="ui.eval_gates")
def gates_page(ctx: Ctx = Authorized("registry:read")) -> Response:
    return _page(ctx)


def gate_from_form(form: dict[str, str]) -> dict[str, Any] | None:
    """The evaluation gate a form describes; None when it names no dataset (no gate).
    Thresholds are lines `scorer >= 0.8` or `scorer <= 2`."""
    dataset = form.get("dataset", "").strip()
    if not dataset:
        return None
    gate: dict[str, Any] = {"dataset": dataset}
    if form.get("dataset_version", "").strip():
        gate["dataset_version"] = _number(form["dataset_version"], "dataset_version", int)
    scorers: dict[str, dict[str, float]] = {}
    for n, line in enumerate(form.get("thresholds", "").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        for op, key in ((">=", "min"), ("<=", "max")):
            label, sep, value = line.partition(op)
            if sep:
                scorers.setdefault(label.strip(), {})[key] = _number(
                    value, f"thresholds line {n}", float
                )
                break
        else:
            raise InvalidInput(f"thresholds line {n}: write `scorer >= 0.8` or `scorer <= 2`")
    if scorers:
        gate["scorers"] = scorers
    for field in NUMBERS:
        if form.get(field, "").strip():
            gate[field] = _number(form[field], field, float)
    if form.get("nw_scorer", "").strip():
        gate["not_worse_than"] = {
            "scorer": form["nw_scorer"].strip(),
            "environment": form.get("nw_environment", "").strip() or "production",
            "margin": _number(form.get("nw_margin", "") or "0", "margin", float),
        }
    return gate


def _number(raw: str, field: str, kind: type[Any]) -> Any:
    try:
        return kind(raw.strip())
    except ValueError:
        raise InvalidInput(f"{field}: {raw.strip()[:40]!r} is not a number") from None


@router.post("/gates/{environment}", name="ui.eval_gates_set")
async def set_gate(
    environment: str, request: Request, ctx: Ctx = Authorized("registry:manage")
) -> Response:
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}

    def work() -> str:
        with ctx.tx(target=f"environment:{environment[:64]}") as tx:
            current = promotion.policy(
                tx.session, workspace_id=ctx.workspace_id, environment=environment
            )
            gates = {k: v for k, v in current.gates.items() if k != "evaluation"}
            gate = gate_from_form(form)
            if gate is not None:
                gates["evaluation"] = gate
            p = promotion.set_policy(
                tx.session,
                workspace_id=ctx.workspace_id,
                environment=environment,
                four_eyes=form.get("four_eyes") == "on",
                gates=gates,
                known=ctx.platform.services["registry"].gates,
            )
            tx.detail = (
                f"four_eyes={p.four_eyes}, gates={json.dumps(p.gates, sort_keys=True)[:1500]}"
            )
            return "set" if gate is not None else "removed"

    try:
        done = await run_in_threadpool(work)
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        detail = exc.detail
        return await run_in_threadpool(lambda: _page(ctx, error=detail))
    message = f"{environment}: the evaluation gate is {done}."
    return await run_in_threadpool(lambda: _page(ctx, message=message))
