"""Promotion: a request to point an environment's alias (`dev`, `staging`,
`production`, or any environment of the workspace) at a version.

    request ──► gates (the environment's policy) ──fail──► 409, nothing stored
                    │ pass
                    ▼
          four eyes? ── no ──► approved, the alias moves now
                    │ yes
                    ▼
                 pending ──► approve (a different user with `registry:approve`)
                    │              └──► the alias moves
                    ├──► reject (an approver)
                    └──► cancel (the requester)

Every step is audited in the caller's transaction (the route's entry), and the alias
move has an audit entry of its own. `rollback` moves an alias back to the version it
pointed at before, in one call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shipyard.identity import service as identity
from shipyard.plugins import Gate, GateResult
from shipyard.registry import assets
from shipyard.registry.events import emit
from shipyard.registry.tables import AssetRow, PolicyRow, PromotionRow, VersionRow
from shipyard.store import new_id, utcnow

PROTECTED = ("production",)  # four eyes by default


@dataclass(frozen=True, slots=True)
class Who:
    """The actor as promotion sees it: a stable ref ("user:<id>"), a label for people."""

    ref: str
    label: str
    kind: str  # user | key


class RequiredMetadata:
    """Built-in gate: the version's metadata must have these keys, non-empty
    (`{"required_metadata": ["owner", "eval_run"]}`)."""

    name = "required_metadata"

    def check(self, s: Any, *, version: Any, environment: str, config: Any) -> GateResult:
        keys = [str(k) for k in (config or [])]
        meta = version.metadata_ or {}
        missing = [k for k in keys if meta.get(k) in (None, "", [], {})]
        if missing:
            return GateResult(self.name, False, f"missing metadata: {', '.join(missing)}")
        return GateResult(self.name, True, f"has {', '.join(keys)}" if keys else "nothing required")


BUILTIN_GATES: dict[str, Gate] = {RequiredMetadata.name: RequiredMetadata()}


# Policies --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    environment: str
    four_eyes: bool
    gates: dict[str, Any]


def policy(s: Session, *, workspace_id: str, environment: str) -> Policy:
    row = s.get(PolicyRow, (workspace_id, environment))
    if row is None:
        return Policy(environment, environment in PROTECTED, {})
    return Policy(environment, row.four_eyes, dict(row.gates or {}))


def set_policy(
    s: Session,
    *,
    workspace_id: str,
    environment: str,
    four_eyes: bool,
    gates: dict[str, Any],
    known: Mapping[str, Gate],
) -> Policy:
    check_environment(s, workspace_id=workspace_id, environment=environment)
    gates = dict(gates)
    for name in gates:
        if name not in known:
            raise InvalidInput(f"gates.{name}: no such gate (known: {', '.join(sorted(known))})")
        check = getattr(known[name], "check_config", None)  # optional: refuse bad ones now
        if check is not None:
            gates[name] = check(gates[name])
    row = s.get(PolicyRow, (workspace_id, environment))
    if row is None:
        row = PolicyRow(workspace_id=workspace_id, environment=environment)
        s.add(row)
    row.four_eyes, row.gates, row.updated_at = four_eyes, dict(gates), utcnow()
    s.flush()
    return Policy(environment, four_eyes, dict(gates))


def check_environment(s: Session, *, workspace_id: str, environment: str) -> None:
    names = identity.environments(s, workspace_id=workspace_id)
    if environment not in names:
        raise InvalidInput(
            f"environment: '{environment[:64]}' is not an environment of this workspace"
            f" ({', '.join(names)})",
            param="environment",
        )


def is_environment(s: Session, *, workspace_id: str, alias: str) -> bool:
    return alias in identity.environments(s, workspace_id=workspace_id)


def run_gates(
    s: Session, *, version: VersionRow, rules: Policy, known: Mapping[str, Gate]
) -> list[GateResult]:
    results = []
    for name, config in sorted(rules.gates.items()):
        gate = known.get(name)
        if gate is None:
            results.append(GateResult(name, False, "this gate is not installed"))
            continue
        try:
            results.append(
                gate.check(s, version=version, environment=rules.environment, config=config)
            )
        except Exception as exc:  # noqa: BLE001 - a failing gate blocks, it does not 500
            results.append(GateResult(name, False, f"the gate failed: {type(exc).__name__}"))
    return results


# Requests --------------------------------------------------------------------------------


def request(
    s: Session,
    asset: AssetRow,
    *,
    number: int,
    environment: str,
    who: Who,
    note: str,
    known: Mapping[str, Gate],
) -> PromotionRow:
    """A promotion request; approved at once (and the alias moved) where the
    environment does not need four eyes. Gates that fail refuse it (409)."""
    check_environment(s, workspace_id=asset.workspace_id, environment=environment)
    version = assets.get_version(s, asset, number)
    rules = policy(s, workspace_id=asset.workspace_id, environment=environment)
    results = run_gates(s, version=version, rules=rules, known=known)
    failed = [r for r in results if not r.passed]
    if failed:
        raise Conflict(
            "gates failed: " + "; ".join(f"{r.gate}: {r.detail}" for r in failed),
            code="gates_failed",
        )
    open_ = s.scalars(
        select(PromotionRow.id).where(
            PromotionRow.asset_id == asset.id,
            PromotionRow.environment == environment,
            PromotionRow.state == "pending",
        )
    ).first()
    if open_ is not None:
        raise Conflict(
            f"{asset.name} already has a pending promotion to {environment} ({open_}):"
            " approve, reject or cancel it first"
        )
    row = PromotionRow(
        id=new_id("prm"),
        workspace_id=asset.workspace_id,
        asset_id=asset.id,
        version=number,
        environment=environment,
        state="pending",
        gates=[{"gate": r.gate, "passed": r.passed, "detail": r.detail} for r in results],
        note=note,
        requested_by=who.ref,
        requested_label=who.label,
        decision_note="",
    )
    s.add(row)
    s.flush()
    _event(s, row, asset, "promotion.requested", who)
    if not rules.four_eyes:
        _approve(s, row, asset, who, "no approval required in this environment")
    return row


def get(s: Session, *, workspace_id: str, promotion_id: str) -> PromotionRow:
    row = s.get(PromotionRow, promotion_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"promotion '{promotion_id[:64]}' not found")
    return row


def listing(
    s: Session, *, workspace_id: str, state: str | None = None, limit: int = 200
) -> list[PromotionRow]:
    query = select(PromotionRow).where(PromotionRow.workspace_id == workspace_id)
    if state is not None:
        query = query.where(PromotionRow.state == state)
    query = query.order_by(PromotionRow.created_at.desc(), PromotionRow.id.desc()).limit(limit)
    return list(s.scalars(query))


def _pending(row: PromotionRow) -> None:
    if row.state != "pending":
        raise Conflict(f"promotion {row.id} is {row.state}, not pending")


def approve(
    s: Session, row: PromotionRow, *, who: Who, note: str, known: Mapping[str, Gate]
) -> PromotionRow:
    """Four eyes: a user other than the requester approves; the gates run again (the
    environment's policy may have changed since the request)."""
    _pending(row)
    if who.kind != "user":
        raise PermissionDenied("an approval needs a person: approve as a user, not an API key")
    if who.ref == row.requested_by:
        raise PermissionDenied(
            "four eyes: the requester cannot approve their own promotion", code="four_eyes"
        )
    asset = _asset_of(s, row)
    version = assets.get_version(s, asset, row.version)
    rules = policy(s, workspace_id=row.workspace_id, environment=row.environment)
    failed = [r for r in run_gates(s, version=version, rules=rules, known=known) if not r.passed]
    if failed:
        raise Conflict(
            "gates failed: " + "; ".join(f"{r.gate}: {r.detail}" for r in failed),
            code="gates_failed",
        )
    _approve(s, row, asset, who, note)
    return row


def _approve(s: Session, row: PromotionRow, asset: AssetRow, who: Who, note: str) -> None:
    row.state, row.decided_by, row.decided_at = "approved", who.ref, utcnow()
    row.decision_note = note
    assets.move_alias(
        s,
        asset,
        alias=row.environment,
        number=row.version,
        reason="promotion",
        actor=f"{who.kind}:{who.label}",
        actor_kind=who.kind,
        promotion_id=row.id,
    )
    _event(s, row, asset, "promotion.approved", who)


def _event(s: Session, row: PromotionRow, asset: AssetRow, event: str, who: Who) -> None:
    emit(
        s,
        workspace_id=row.workspace_id,
        event=event,
        data={
            "promotion_id": row.id,
            "kind": asset.kind,
            "name": asset.name,
            "version": row.version,
            "environment": row.environment,
            "state": row.state,
            "by": who.label,
        },
    )


def _asset_of(s: Session, row: PromotionRow) -> AssetRow:
    asset = s.get(AssetRow, row.asset_id)
    assert asset is not None  # a foreign key
    return asset


def reject(s: Session, row: PromotionRow, *, who: Who, note: str) -> PromotionRow:
    _pending(row)
    row.state, row.decided_by, row.decided_at = "rejected", who.ref, utcnow()
    row.decision_note = note
    _event(s, row, _asset_of(s, row), "promotion.rejected", who)
    return row


def cancel(s: Session, row: PromotionRow, *, who: Who) -> PromotionRow:
    _pending(row)
    if who.ref != row.requested_by:
        raise PermissionDenied("only the requester can cancel a promotion (approvers reject)")
    row.state, row.decided_by, row.decided_at = "cancelled", who.ref, utcnow()
    _event(s, row, _asset_of(s, row), "promotion.cancelled", who)
    return row


def rollback(s: Session, asset: AssetRow, *, alias: str, who: Who) -> int:
    """Point `alias` back at the version it pointed at before; that version's number."""
    number = assets.previous(s, asset, alias)
    assets.move_alias(
        s,
        asset,
        alias=alias,
        number=number,
        reason="rollback",
        actor=f"{who.kind}:{who.label}",
        actor_kind=who.kind,
    )
    return number
