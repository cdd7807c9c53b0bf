"""Each workspace's tracing settings: what is masked, how long spans are kept, whether
inputs and outputs are captured at all.

The ingest path never reads these from the database: `load_all` reads every workspace's
row in one query when the service starts and after a change, and ingest looks the
workspace up in the dictionary it returns (`DEFAULT` when it has no row)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput
from shipyard.store import Database, utcnow
from shipyard.tracing.masking import DETECTORS, Masker, check_pattern
from shipyard.tracing.tables import TracingSettingsRow

log = logging.getLogger("shipyard.tracing")

MAX_RETENTION_DAYS = 36_500


@dataclass(frozen=True)
class WorkspaceTracing:
    masker: Masker = field(default_factory=Masker)
    retention_days: int | None = None  # None: spans are kept until deleted
    capture_content: bool = True  # False: inputs and outputs are not stored at all

    @property
    def detectors(self) -> tuple[str, ...]:
        return self.masker.detectors

    @property
    def custom_patterns(self) -> tuple[str, ...]:
        return self.masker.custom


DEFAULT = WorkspaceTracing()  # every detector on, no custom pattern, kept forever


def _from_row(row: TracingSettingsRow, maskers: dict[tuple[str, ...], Masker]) -> WorkspaceTracing:
    detectors = tuple(d for d in DETECTORS if d in set(row.detectors or ()))
    patterns = list(row.custom_patterns or ())
    valid = []
    for pattern in patterns:
        try:
            valid.append(check_pattern(pattern))
        except (ValueError, TypeError) as exc:  # stored by a version with other rules
            log.error("workspace %s: custom pattern skipped: %s", row.workspace_id, exc)
    key = (*detectors, "\0", *valid)
    masker = maskers.get(key)
    if masker is None:  # workspaces with the same settings share one masker
        masker = maskers[key] = Masker(detectors, valid)
    return WorkspaceTracing(
        masker=masker, retention_days=row.retention_days, capture_content=row.capture_content
    )


def load_all(db: Database) -> dict[str, WorkspaceTracing]:
    """Every workspace's settings, in one query."""
    with db.transaction() as session:
        rows = session.scalars(select(TracingSettingsRow)).all()
        maskers: dict[tuple[str, ...], Masker] = {}
        return {row.workspace_id: _from_row(row, maskers) for row in rows}


def get(session: Session, workspace_id: str) -> tuple[WorkspaceTracing, TracingSettingsRow | None]:
    """One workspace's settings (for the admin API) and its row (None: the defaults)."""
    row = session.get(TracingSettingsRow, workspace_id)
    return (DEFAULT if row is None else _from_row(row, {})), row


def update(
    session: Session,
    workspace_id: str,
    *,
    detectors: Iterable[str] = DETECTORS,
    custom_patterns: Sequence[str] = (),
    retention_days: int | None = None,
    capture_content: bool = True,
) -> tuple[WorkspaceTracing, TracingSettingsRow]:
    """Replace a workspace's settings; every value is checked first (InvalidInput
    naming the field), and the masker is built here, so a setting that is stored
    always loads."""
    if retention_days is not None and not 1 <= retention_days <= MAX_RETENTION_DAYS:
        raise InvalidInput(
            f"retention_days: between 1 and {MAX_RETENTION_DAYS}, or null to keep spans",
            param="retention_days",
        )
    masker = Masker(detectors, custom_patterns)  # validates both
    row = session.get(TracingSettingsRow, workspace_id)
    if row is None:
        row = TracingSettingsRow(workspace_id=workspace_id)
        session.add(row)
    row.detectors = list(masker.detectors)
    row.custom_patterns = list(masker.custom)
    row.retention_days = retention_days
    row.capture_content = capture_content
    row.updated_at = utcnow()
    session.flush()
    config = WorkspaceTracing(
        masker=masker, retention_days=retention_days, capture_content=capture_content
    )
    return config, row
