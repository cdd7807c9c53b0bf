"""Tracing settings under /api/tracing/settings: the caller's workspace's masking
(detectors, custom patterns), retention and content capture. Thin routes over
`shipyard.tracing.config`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BaseModel, Field

from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Strict
from shipyard.tracing import config
from shipyard.tracing.masking import DETECTORS, MAX_CUSTOM, MAX_PATTERN_CHARS, check_pattern

router = APIRouter(prefix="/api/tracing", tags=["tracing"])

Detector = Literal["email", "phone", "credit_card", "iban", "ip", "secret"]
assert get_args(Detector) == DETECTORS  # one list of names
Pattern = Annotated[
    str, Field(min_length=1, max_length=MAX_PATTERN_CHARS), AfterValidator(check_pattern)
]


class TracingSettingsIn(Strict):
    """The whole of a workspace's settings (PUT replaces them; an omitted field takes
    its default)."""

    detectors: list[Detector] = Field(
        default_factory=lambda: list(get_args(Detector)), max_length=2 * len(DETECTORS)
    )
    custom_patterns: list[Pattern] = Field(default_factory=list, max_length=MAX_CUSTOM)
    retention_days: int | None = Field(default=None, ge=1, le=config.MAX_RETENTION_DAYS)
    capture_content: bool = True


class TracingSettingsPublic(BaseModel):
    detectors: list[Detector]
    custom_patterns: list[str]
    retention_days: int | None  # null: spans are kept until deleted
    capture_content: bool
    updated_at: datetime | None  # null: never set (the defaults)


def _public(
    settings: config.WorkspaceTracing, updated_at: datetime | None
) -> TracingSettingsPublic:
    return TracingSettingsPublic(
        detectors=list(settings.detectors),
        custom_patterns=list(settings.custom_patterns),
        retention_days=settings.retention_days,
        capture_content=settings.capture_content,
        updated_at=updated_at,
    )


@router.get("/settings", name="tracing.settings.get")
def get_settings(ctx: Ctx = Authorized("traces:read")) -> TracingSettingsPublic:
    with ctx.tx() as tx:
        settings, row = config.get(tx.session, ctx.workspace_id)
        return _public(settings, row.updated_at if row is not None else None)


@router.put("/settings", name="tracing.settings.put")
async def put_settings(
    body: TracingSettingsIn, ctx: Ctx = Authorized("tracing:manage")
) -> TracingSettingsPublic:
    def work() -> TracingSettingsPublic:
        with ctx.tx(target=f"workspace:{ctx.workspace_id}") as tx:
            settings, row = config.update(
                tx.session,
                ctx.workspace_id,
                detectors=body.detectors,
                custom_patterns=body.custom_patterns,
                retention_days=body.retention_days,
                capture_content=body.capture_content,
            )
            tx.detail = (
                f"detectors={','.join(settings.detectors) or 'none'} "
                f"custom_patterns={len(settings.custom_patterns)} "
                f"retention_days={settings.retention_days} "
                f"capture_content={settings.capture_content}"
            )
            return _public(settings, row.updated_at)

    out = await run_in_threadpool(work)
    service = ctx.platform.services.get("tracing")
    if service is not None:  # this replica's ingest sees the change at once
        await service.reload()
    return out
