"""The closed loop in the UI, under /serving: one page per registered model showing, for
each version, the loop as one flow — the data it was trained on (a dataset version made
of traces and their corrections), the fine-tuning job, the validation against its base
(exact match with 95% intervals, drawn), the promotion requests and who decided them,
the canaries on live traffic (each arm's online score, drawn, and the platform's
decision) and the alias moves, rollbacks included. The index lists the models, the
canaries and the dataset versions made from traces.

Read-only: the changes are made where they belong (fine-tuning, registry, API); the
page links there. Names and messages are user input: the templates escape them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from starlette.responses import Response

from shipyard.errors import PermissionDenied
from shipyard.http.deps import Authorized, Ctx
from shipyard.serving.tables import CanaryRow
from shipyard.ui.router import render

router = APIRouter(include_in_schema=False, prefix="/serving")
STEPS = ("data", "training", "validation", "promotion", "canary")


def _readable(ctx: Ctx) -> None:
    if not ctx.actor.can("registry:read"):
        raise PermissionDenied("the loop's page needs registry:read")


def _labels(s: Any, refs: set[str]) -> dict[str, str]:
    """ "user:<id>" -> the user's e-mail (other refs shown as they are)."""
    from shipyard.identity.models import User

    ids = {r.partition(":")[2] for r in refs if r.startswith("user:")}
    if not ids:
        return {}
    rows = s.execute(select(User.id, User.email).where(User.id.in_(ids))).all()
    return {f"user:{i}": email for i, email in rows}


def _canary(row: CanaryRow) -> dict[str, Any]:
    decision = row.decision or {}
    arms = [
        {"arm": arm, "version": version, "n": (decision.get(arm) or {}).get("n"),
         "mean": (decision.get(arm) or {}).get("mean")}
        for arm, version in (("stable", row.stable_version), ("canary", row.canary_version))
    ]  # fmt: skip
    return {
        "id": row.id, "route": row.route, "model": row.model, "status": row.status,
        "percent": row.percent, "metric": row.metric, "margin": row.margin,
        "stable_alias": row.stable_alias, "stable_version": row.stable_version,
        "canary_version": row.canary_version, "arms": arms,
        "difference": decision.get("difference"), "reason": decision.get("reason", ""),
        "started_at": row.started_at, "ended_at": row.ended_at,
        "chart": _bars([(f"{a['arm']} v{a['version']}", a["mean"], None, None) for a in arms]),
    }  # fmt: skip


def _job(job: Any) -> dict[str, Any] | None:
    if job is None:
        return None
    return {
        "id": job.id, "status": job.status, "model": job.model,
        "trained_tokens": job.trained_tokens, "step": job.step, "total": job.total_steps,
    }  # fmt: skip


def _promotion(p: Any, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "environment": p.environment, "state": p.state,
        "requested_by": labels.get(p.requested_by, p.requested_label or p.requested_by),
        "decided_by": labels.get(p.decided_by or "", p.decided_by),
        "gates": p.gates or [], "at": p.decided_at or p.created_at,
    }  # fmt: skip


def _move(m: Any) -> dict[str, Any]:
    return {"alias": m.alias, "from": m.from_version, "to": m.to_version, "reason": m.reason,
            "actor": m.actor, "at": m.at}  # fmt: skip


def _score(run: Any) -> dict[str, Any]:
    scores = (run.aggregates or {}).get("scores", {}) if run is not None else {}
    return dict(scores.get("exact_match") or {})


def _validation(s: Any, ctx: Ctx, name: str, number: int, job: Any) -> list[dict[str, Any]]:
    """The validation runs: the version's (its subject) and, from its job, its base's."""
    from shipyard.evaluation.tables import RunRow

    runs: dict[str, Any] = {}
    for run in s.scalars(
        select(RunRow)
        .where(RunRow.workspace_id == ctx.workspace_id, RunRow.subject == f"model:{name}@{number}")
        .order_by(RunRow.created_at.desc())
        .limit(5)
    ):
        runs.setdefault("fine-tuned", run)
    made = ((job.result or {}).get("validation") or {}) if job is not None else {}
    for arm, label in (("fine_tuned", "fine-tuned"), ("base", "base")):
        run = s.get(RunRow, made[arm]) if made.get(arm) else None
        if run is not None and run.workspace_id == ctx.workspace_id:
            runs[label] = run
    return [
        {"arm": label, "id": run.id, "status": run.status, "target": run.target_label,
         "score": _score(run)}
        for label, run in sorted(runs.items())
    ]  # fmt: skip


def _bars(rows: list[tuple[str, Any, Any, Any]]) -> dict[str, Any]:
    """A horizontal bar chart on [0, 1] (label, mean, interval low, high), as SVG
    coordinates for the template."""
    width, left, height = 480, 120, 26
    out = []
    for i, (label, mean, low, high) in enumerate(rows):
        y = 8 + i * height
        span = width - left - 16
        item: dict[str, Any] = {"label": label, "y": y, "mean": mean, "w": 0.0}
        if mean is not None:
            item["w"] = max(1.0, span * max(0.0, min(1.0, mean)))
        if low is not None and high is not None:
            item["lo"] = left + span * max(0.0, min(1.0, low))
            item["hi"] = left + span * max(0.0, min(1.0, high))
        out.append(item)
    return {"bars": out, "left": left, "width": width, "height": 16 + height * len(rows)}


def _flow(ctx: Ctx, name: str) -> dict[str, Any]:
    from shipyard.registry import assets
    from shipyard.registry.tables import PromotionRow
    from shipyard.training.tables import JobRow

    with ctx.platform.db.transaction() as s:
        asset = assets.get_asset(s, workspace_id=ctx.workspace_id, kind="model", name=name)
        aliases = assets.aliases(s, asset)
        promotions = s.scalars(
            select(PromotionRow)
            .where(PromotionRow.asset_id == asset.id)
            .order_by(PromotionRow.created_at, PromotionRow.id)
        ).all()
        canaries = s.scalars(
            select(CanaryRow)
            .where(CanaryRow.workspace_id == ctx.workspace_id, CanaryRow.model == name)
            .order_by(CanaryRow.started_at)
        ).all()
        moves = assets.history(s, asset)[:100]
        labels = _labels(
            s, {p.requested_by for p in promotions} | {p.decided_by or "" for p in promotions}
        )
        versions: list[dict[str, Any]] = []
        for v in reversed(assets.list_versions(s, asset)):
            lineage = v.lineage or {}
            job = s.get(JobRow, str(lineage.get("job") or "")[:64])
            if job is not None and job.workspace_id != ctx.workspace_id:
                job = None
            validation = _validation(s, ctx, name, v.number, job)
            versions.append({
                "number": v.number, "message": v.message, "created_at": v.created_at,
                "aliases": sorted(a for a, n in aliases.items() if n == v.number),
                "datasets": lineage.get("datasets") or [],
                "base_model": lineage.get("base_model"),
                "job": _job(job),
                "validation": validation,
                "validation_chart": _bars([
                    (r["arm"], r["score"].get("mean"), r["score"].get("ci_low"),
                     r["score"].get("ci_high")) for r in validation
                ]) if validation else None,
                "promotions": [_promotion(p, labels) for p in promotions if p.version == v.number],
                "canaries": [_canary(c) for c in canaries if c.canary_version == v.number],
                "moves": [_move(m) for m in moves if v.number in (m.to_version, m.from_version)],
            })  # fmt: skip
        for flow in versions:
            flow["steps"] = _steps(flow)
    return {"asset": {"name": asset.name, "description": asset.description}, "versions": versions}


def _steps(v: dict[str, Any]) -> list[dict[str, str]]:
    """The loop's five steps for a version, each done, failed, running or not reached."""
    job, val, proms, cans = v["job"], v["validation"], v["promotions"], v["canaries"]
    states = {
        "data": "done" if v["datasets"] else "none",
        "training": "none" if job is None else {
            "succeeded": "done", "failed": "failed", "cancelled": "failed",
        }.get(job["status"], "running"),
        "validation": "none" if not val else (
            "done" if all(r["status"] == "completed" for r in val) else "running"),
        "promotion": "none" if not proms else (
            "done" if any(p["state"] == "approved" for p in proms)
            else "failed" if all(p["state"] in ("rejected", "cancelled") for p in proms)
            else "running"),
        "canary": "none" if not cans else {
            "promoted": "done", "rolled_back": "failed", "stopped": "failed",
        }.get(cans[-1]["status"], "running"),
    }  # fmt: skip
    return [{"name": step, "state": states[step]} for step in STEPS]


@router.get("", name="ui.serving")
def index(ctx: Ctx = Authorized("serving:read")) -> Response:
    from shipyard.evaluation.tables import DatasetRow, DatasetVersionRow
    from shipyard.registry.tables import AssetRow

    _readable(ctx)
    with ctx.platform.db.transaction() as s:
        models = s.scalars(
            select(AssetRow)
            .where(AssetRow.workspace_id == ctx.workspace_id, AssetRow.kind == "model")
            .order_by(AssetRow.updated_at.desc())
            .limit(200)
        ).all()
        canaries = s.scalars(
            select(CanaryRow)
            .where(CanaryRow.workspace_id == ctx.workspace_id)
            .order_by(CanaryRow.started_at.desc())
            .limit(100)
        ).all()
        rows = [_canary(c) for c in canaries]
        found: list[Any] = []
        if ctx.actor.can("datasets:read"):
            found = list(s.execute(
                select(DatasetRow.name, DatasetVersionRow)
                .join(DatasetVersionRow, DatasetVersionRow.dataset_id == DatasetRow.id)
                .where(DatasetRow.workspace_id == ctx.workspace_id,
                       DatasetVersionRow.source == "traces")
                .order_by(DatasetVersionRow.created_at.desc())
                .limit(20)
            ).all())  # fmt: skip
        data = [
            {"dataset": n, "version": v.number, "items": v.item_count, "added": v.added,
             "at": v.created_at}
            for n, v in found
        ]  # fmt: skip
        listed = [{"name": m.name, "latest": m.latest, "updated_at": m.updated_at} for m in models]
    return render(ctx, "serving_index.html", "serving", models=listed, canaries=rows, data=data)


@router.get("/models/{name}", name="ui.serving_model")
def model(name: str, ctx: Ctx = Authorized("serving:read")) -> Response:
    _readable(ctx)
    return render(ctx, "serving_flow.html", "serving", **_flow(ctx, name[:128]))
