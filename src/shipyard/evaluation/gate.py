"""The quality gate registry promotions check (`shipyard.gates` entry point
`evaluation`): the version being promoted must have a completed evaluation run on the
gate's dataset version whose numbers pass.

An environment's policy sets it, e.g. for production:

    {"gates": {"evaluation": {
        "dataset": "support-golden", "dataset_version": 3,
        "scorers": {"exact_match": {"min": 0.8}, "llm_judge": {"min": 4}},
        "max_latency_p95_ms": 2000, "max_cost_per_item_usd": 0.01,
        "not_worse_than": {"environment": "production", "scorer": "exact_match",
                           "margin": 0.02}}}}

`not_worse_than` compares the candidate's run with the run of the version the
environment points at now, item by item: the gate fails when the candidate is worse by
more than `margin` with significance (the paired bootstrap interval of the difference
lies wholly below `-margin`). A run evaluates a registry version when its `subject`
names it: prompt and release targets set it themselves, route targets say it."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.evaluation import datasets, runs, stats
from shipyard.evaluation.runs import subject_of
from shipyard.evaluation.tables import RunRow
from shipyard.inputs import Strict, invalid
from shipyard.plugins import GateResult
from shipyard.registry import assets
from shipyard.registry.tables import AssetRow


class Bound(Strict):
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)


class NotWorse(Strict):
    environment: str = Field(default="production", min_length=1, max_length=64)
    scorer: str = Field(min_length=1, max_length=64)
    margin: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class GateConfig(Strict):
    dataset: str = Field(pattern=datasets.NAME)
    dataset_version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="default: latest"
    )
    scorers: dict[str, Bound] = Field(default_factory=dict)
    max_latency_p95_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_cost_per_item_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    not_worse_than: NotWorse | None = None


class EvaluationGate:
    name = "evaluation"

    def check_config(self, config: Any) -> dict[str, Any]:
        """Checked when a policy is set, so a bad gate is refused then, not at promotion."""
        try:
            return GateConfig.model_validate(config).model_dump(exclude_none=True)
        except ValidationError as exc:
            raise invalid(exc, "gates.evaluation") from None

    def check(self, s: Session, *, version: Any, environment: str, config: Any) -> GateResult:
        try:
            cfg = GateConfig.model_validate(config)
        except ValidationError as exc:
            return GateResult(self.name, False, f"bad gate configuration: {invalid(exc).detail}")
        asset = s.get(AssetRow, version.asset_id)
        if asset is None:
            return GateResult(self.name, False, "the version's asset is gone")
        try:
            ds = datasets.get(s, asset.workspace_id, cfg.dataset)
            ds_version = datasets.version(s, ds, cfg.dataset_version).number
        except (NotFound, InvalidInput) as exc:
            return GateResult(self.name, False, exc.detail)
        subject = subject_of(asset.kind, asset.name, version.number)
        run = latest_run(s, asset.workspace_id, subject, ds.id, ds_version)
        where = f"{cfg.dataset}@{ds_version}"
        if run is None:
            return GateResult(
                self.name,
                False,
                f"no completed evaluation run of {subject} on {where}: run one "
                f"(shipyard eval run --subject {subject} --dataset {cfg.dataset})",
            )
        problems, passed = [], []
        agg = run.aggregates or {}
        for label, bound in sorted(cfg.scorers.items()):
            summary = (agg.get("scores") or {}).get(label)
            mean = None if summary is None else summary.get("mean")
            if mean is None:
                problems.append(f"{label}: the run has no scores for it")
                continue
            if bound.min is not None and mean < bound.min:
                problems.append(f"{label} {mean:.3f} < {bound.min:g}")
            elif bound.max is not None and mean > bound.max:
                problems.append(f"{label} {mean:.3f} > {bound.max:g}")
            else:
                passed.append(f"{label} {mean:.3f}")
        p95 = (agg.get("latency_ms") or {}).get("p95")
        if (limit := cfg.max_latency_p95_ms) is not None and (p95 is None or p95 > limit):
            problems.append(f"latency p95 {_num(p95)} ms > {limit:g}")
        per_item = agg.get("cost_per_item_usd")
        cap = cfg.max_cost_per_item_usd
        if cap is not None and (per_item is None or per_item > cap):
            problems.append(f"cost per item ${_num(per_item)} > ${cap:g}")
        if cfg.max_error_rate is not None and run.total:
            rate = run.errors / run.total
            if rate > cfg.max_error_rate:
                problems.append(f"error rate {rate:.3f} > {cfg.max_error_rate:g}")
        if cfg.not_worse_than is not None:
            verdict = self._not_worse(s, asset, run, cfg.not_worse_than, ds.id, ds_version)
            (problems if verdict.startswith("worse") else passed).append(verdict)
        detail = f"run {run.id} on {where}: " + "; ".join(problems or passed or ["passed"])
        return GateResult(self.name, not problems, detail[:2000])

    def _not_worse(
        self, s: Session, asset: AssetRow, run: RunRow, rule: NotWorse, ds_id: str, ds_v: int
    ) -> str:
        current = assets.aliases(s, asset).get(rule.environment)
        if current is None:
            return f"no {rule.environment} version to compare with"
        subject = subject_of(asset.kind, asset.name, current)
        if subject == run.subject:
            return f"is the {rule.environment} version"
        baseline = latest_run(s, asset.workspace_id, subject, ds_id, ds_v)
        if baseline is None:
            return f"{rule.environment} ({subject}) has no run on this dataset version to compare"
        if rule.scorer not in {sc["label"] for sc in run.scorers} or rule.scorer not in {
            sc["label"] for sc in baseline.scorers
        }:
            return f"worse: both runs need the scorer {rule.scorer} to compare"
        direction = runs.directions(run).get(rule.scorer, True)
        a, b = paired_values(s, baseline, run, rule.scorer)
        p = stats.paired(a, b, higher_is_better=direction)
        sign = 1 if direction else -1
        # the candidate's gain (negative: loss) on the scorer's own direction
        gain, high = sign * p.diff, (p.high if direction else -p.low)
        if p.n > 1 and high < -rule.margin:
            return (
                f"worse than {rule.environment} ({subject}) on {rule.scorer} by {-gain:.3f} "
                f"(95% interval of the difference up to {high:.3f}, margin {rule.margin:g}, "
                f"{p.losses} losses / {p.wins} wins, sign test p={p.p_sign:.3g})"
            )
        return f"not worse than {rule.environment} ({subject}) on {rule.scorer}: {gain:+.3f}"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4g}"


def latest_run(s: Session, workspace_id: str, subject: str, ds_id: str, ds_v: int) -> RunRow | None:
    return s.scalars(
        select(RunRow)
        .where(
            RunRow.workspace_id == workspace_id,
            RunRow.subject == subject,
            RunRow.dataset_id == ds_id,
            RunRow.dataset_version == ds_v,
            RunRow.status == "completed",
        )
        .order_by(RunRow.finished_at.desc())
        .limit(1)
    ).first()


def paired_values(
    s: Session, a_run: RunRow, b_run: RunRow, label: str
) -> tuple[list[float], list[float]]:
    a_rows = {r.item_key: r for r in runs.results(s, a_run)}
    a, b = [], []
    for r in runs.results(s, b_run):
        other = a_rows.get(r.item_key)
        va, vb = runs.value_of(other, label), runs.value_of(r, label)
        if va is not None and vb is not None:
            a.append(va)
            b.append(vb)
    return a, b
