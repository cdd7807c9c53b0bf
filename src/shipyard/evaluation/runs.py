"""Evaluation runs: what a run is asked (`RunIn`), the checks made before it is queued
(the dataset version exists, every scorer is known and its configuration valid, the
target is one the gateway serves now), the aggregates of its results, and comparisons
of runs on the same items.

A run's target is called through the gateway's typed in-process call, as the actor that
started the run: governed, budgeted and recorded like any other call (see `runner`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.evaluation import datasets, stats
from shipyard.evaluation.schemas import RunIn as RunIn  # re-exported
from shipyard.evaluation.schemas import ScorerIn, TargetIn
from shipyard.evaluation.scorers import load_scorer
from shipyard.evaluation.scorers.base import check_config
from shipyard.evaluation.tables import ResultRow, RunRow
from shipyard.identity.actor import Actor
from shipyard.identity.stored import actor_json as actor_json  # re-exported
from shipyard.plugins import Plugins, Scorer
from shipyard.registry import assets
from shipyard.store import new_id

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
ACTIVE = ("queued", "running")


def checked_scorers(plugins: Plugins, scorers: Sequence[ScorerIn]) -> list[dict[str, Any]]:
    out = []
    for n, spec in enumerate(scorers):
        scorer = load_scorer(plugins, spec.name)
        config = check_config(scorer, spec.config, f"scorers.{n}.config")
        out.append(
            {
                "name": spec.name,
                "label": spec.label or spec.name,
                "config": config,
                "higher_is_better": bool(scorer.higher_is_better),
            }
        )
    return out


def loaded(
    plugins: Plugins, specs: Sequence[dict[str, Any]]
) -> list[tuple[str, Scorer, dict[str, Any]]]:
    return [(s["label"], load_scorer(plugins, s["name"]), s["config"]) for s in specs]


def check_target(gateway: Any, workspace_id: str, target: TargetIn) -> None:
    """The target exists in the gateway's configuration now (else 400 naming it)."""
    snap = gateway.snapshot
    if target.kind == "pipeline":
        return  # resolved in the run's transaction (`subject_for`)
    if target.kind in {"route", "model"}:
        route = snap.route(workspace_id, target.ref)
        if route is None or route.kind != "chat":
            raise InvalidInput(
                f"target.ref: no chat route or model '{target.ref}' in this workspace",
                param="target.ref",
            )
        return
    if (workspace_id, target.ref) not in snap.prompts:
        raise InvalidInput(
            f"target.ref: no prompt '{target.ref}' (name, name@version, name@alias or "
            "release@alias/member)",
            param="target.ref",
        )
    if target.model is not None:
        route = snap.route(workspace_id, target.model)
        if route is None or route.kind != "chat":
            raise InvalidInput(
                f"target.model: no chat route '{target.model}' in this workspace",
                param="target.model",
            )


def subject_of(kind: str, name: str, number: int) -> str:
    return f"{kind}:{name}@{number}"


def version_subject(s: Session, workspace_id: str, kind: str, ref: str) -> str:
    """`kind:name@N` of the registry version a reference names now."""
    try:
        asset, version = assets.resolve(
            s, workspace_id=workspace_id, kind=kind, ref=assets.parse_ref(ref, param="subject")
        )
    except NotFound as exc:
        raise InvalidInput(f"subject: {exc.detail}", param="subject") from None
    return subject_of(kind, asset.name, version.number)


def pipeline_subject(s: Session, workspace_id: str, ref: str) -> str:
    """`pipeline:name@N` of the version a pipeline target names now (400 if none)."""
    try:
        asset, version = assets.resolve_member(
            s, workspace_id=workspace_id, kind="pipeline", raw=ref, param="target.ref"
        )
    except NotFound as exc:
        raise InvalidInput(f"target.ref: {exc.detail}", param="target.ref") from None
    return subject_of("pipeline", asset.name, version.number)


def subject_for(s: Session, workspace_id: str, body: RunIn) -> str:
    if body.subject is not None:
        kind, _, ref = body.subject.partition(":")
        return version_subject(s, workspace_id, kind, ref)
    target = body.target
    if target.kind == "release" or (target.kind == "prompt" and "/" in target.ref):
        return version_subject(s, workspace_id, "release", target.ref.partition("/")[0])
    if target.kind == "pipeline":
        return pipeline_subject(s, workspace_id, target.ref)
    if target.kind == "prompt":
        return version_subject(s, workspace_id, "prompt", target.ref)
    return ""


def create(
    s: Session,
    *,
    plugins: Plugins,
    gateway: Any,
    actor: Actor,
    body: RunIn,
) -> RunRow:
    ds = datasets.get(s, actor.workspace_id, body.dataset)
    version = datasets.version(s, ds, body.dataset_version)
    if version.item_count == 0:
        raise InvalidInput(f"dataset: version {version.number} holds no items", param="dataset")
    scorers = checked_scorers(plugins, body.scorers)
    check_target(gateway, actor.workspace_id, body.target)
    subject = subject_for(s, actor.workspace_id, body)  # resolves a pipeline target
    if body.target.kind == "pipeline" and body.subject is not None:
        pipeline_subject(s, actor.workspace_id, body.target.ref)  # it must exist too
    row = RunRow(
        id=new_id("run"),
        workspace_id=actor.workspace_id,
        name=body.name or f"{body.target.ref} on {ds.name}@{version.number}",
        target={**body.target.model_dump(), "actor": actor_json(actor)},
        target_label=body.target.label,
        subject=subject,
        dataset_id=ds.id,
        dataset_version=version.number,
        scorers=scorers,
        params=dict(body.params),
        concurrency=body.concurrency,
        status="queued",
        total=version.item_count,
        created_by=actor.ref,
    )
    s.add(row)
    s.flush()
    return row


def get(s: Session, workspace_id: str, run_id: str) -> RunRow:
    row = s.get(RunRow, run_id[:32])
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no evaluation run {run_id[:32]!r} in this workspace")
    return row


def results(s: Session, run: RunRow) -> list[ResultRow]:
    q = select(ResultRow).where(ResultRow.run_id == run.id).order_by(ResultRow.position)
    return list(s.scalars(q))


def counts(s: Session, run_id: str) -> tuple[int, int]:
    """(items done: scored, or failed; of them failed)."""
    done = s.scalar(
        select(func.count())
        .select_from(ResultRow)
        .where(ResultRow.run_id == run_id, ResultRow.scored.is_(True))
    )
    failed = s.scalar(
        select(func.count())
        .select_from(ResultRow)
        .where(ResultRow.run_id == run_id, ResultRow.error != "")
    )
    return int(done or 0), int(failed or 0)


def _interval(values: list[float]) -> dict[str, Any] | None:
    ci = stats.mean_ci(values)
    if ci is None:
        return None
    return {"mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high, "n": ci.n}


def aggregates(run: RunRow, rows: Sequence[ResultRow]) -> dict[str, Any]:
    """Per scorer: mean with its 95% bootstrap interval over the scored items, and how
    many could not be scored; latency p50/p95, tokens and cost per item."""
    out: dict[str, Any] = {"scores": {}}
    for spec in run.scorers:
        label = spec["label"]
        values = [
            float(r.scores[label]["value"])
            for r in rows
            if label in r.scores and r.scores[label].get("value") is not None
        ]
        summary = _interval(values) or {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
        summary["unscored"] = len(rows) - len(values)
        out["scores"][label] = summary
    latencies = [r.latency_ms for r in rows if r.latency_ms is not None and not r.error]
    ok = [r for r in rows if not r.error]
    out["latency_ms"] = {
        "p50": stats.percentile(latencies, 50),
        "p95": stats.percentile(latencies, 95),
    }
    out["items"] = len(rows)
    out["errors"] = len(rows) - len(ok)
    out["cost_usd"] = sum(r.cost_usd for r in rows)
    out["cost_per_item_usd"] = out["cost_usd"] / len(ok) if ok else None
    out["input_tokens"] = sum(r.input_tokens for r in rows)
    out["output_tokens"] = sum(r.output_tokens for r in rows)
    return out


def directions(run: RunRow) -> dict[str, bool]:
    """Scorer label -> whether higher is better (as the scorer said when the run began)."""
    return {s["label"]: bool(s.get("higher_is_better", True)) for s in run.scorers}


def compare(runs: Sequence[RunRow], rows: Sequence[Sequence[ResultRow]]) -> dict[str, Any]:
    """Each run against the first (the baseline) on the items both have scored: per
    scorer the paired difference, wins, losses, ties and significance; and per item the
    outputs and scores side by side with each run's verdict."""
    base, base_rows = runs[0], rows[0]
    by_key = [{r.item_key: r for r in rr} for rr in rows]
    better = directions(base)
    shared = [s["label"] for s in base.scorers if all(s["label"] in _labels(r) for r in runs)]
    against: list[dict[str, Any]] = []
    for run, mine in zip(runs[1:], by_key[1:], strict=True):
        per: dict[str, Any] = {}
        for label in shared:
            a, b = [], []
            for r in base_rows:
                other = mine.get(r.item_key)
                va, vb = value_of(r, label), value_of(other, label)
                if va is not None and vb is not None:
                    a.append(va)
                    b.append(vb)
            p = stats.paired(a, b, higher_is_better=better.get(label, True))
            per[label] = {
                "n": p.n,
                "diff": p.diff,
                "ci_low": p.low,
                "ci_high": p.high,
                "wins": p.wins,
                "losses": p.losses,
                "ties": p.ties,
                "p_sign": p.p_sign,
                "p_bootstrap": p.p_bootstrap,
                "significant": p.significant(),
            }
        against.append({"run": run.id, "scores": per})
    items = []
    for r in base_rows:
        cells = []
        for mine in by_key:
            other = mine.get(r.item_key)
            cells.append(
                None
                if other is None
                else {"output": other.output, "error": other.error, "scores": other.scores}
            )
        items.append({"id": r.item_key, "position": r.position, "runs": cells})
    return {"baseline": base.id, "scorers": shared, "against": against, "items": items}


def _labels(run: RunRow) -> set[str]:
    return {s["label"] for s in run.scorers}


def value_of(row: ResultRow | None, label: str) -> float | None:
    """The item's score for `label`; None when it failed or could not be scored."""
    if row is None or row.error:
        return None
    score = row.scores.get(label)
    if not score or score.get("value") is None:
        return None
    return float(score["value"])


def runs_of_subject(s: Session, workspace_id: str, subject: str) -> list[tuple[str, str, str]]:
    """The runs that evaluated a registry version, as lineage nodes (newest first)."""
    rows = s.scalars(
        select(RunRow)
        .where(RunRow.workspace_id == workspace_id, RunRow.subject == subject)
        .order_by(RunRow.created_at.desc())
        .limit(50)
    ).all()
    out = []
    for r in rows:
        scores = (r.aggregates or {}).get("scores") or {}
        first = next(iter(scores.items()), None)
        score = (
            f", {first[0]} {first[1]['mean']:.3f}"
            if first and first[1].get("mean") is not None
            else ""
        )
        out.append((f"evaluation:{r.id}", "evaluation", f"{r.name} ({r.status}{score})"))
    return out
