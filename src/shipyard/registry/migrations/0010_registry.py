"""registry: catalog, assets (models, prompts, releases), versions, aliases, promotions

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from shipyard.store.base import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _workspace() -> sa.Column[str]:
    return sa.Column(
        "workspace_id",
        sa.String(32),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
    )


def _asset() -> sa.Column[str]:
    return sa.Column(
        "asset_id",
        sa.String(32),
        sa.ForeignKey("registry_assets.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "registry_catalog",
        sa.Column("id", sa.String(32), primary_key=True),
        _workspace(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("max_context", sa.Integer(), nullable=True),
        sa.Column("input_cost", sa.Float(), nullable=True),
        sa.Column("output_cost", sa.Float(), nullable=True),
        sa.Column("commercial_use", sa.Boolean(), nullable=True),
        sa.Column("entry", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("workspace_id", "name", name="uq_registry_catalog_name"),
    )
    op.create_table(
        "registry_assets",
        sa.Column("id", sa.String(32), primary_key=True),
        _workspace(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("latest", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(400), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("workspace_id", "kind", "name", name="uq_registry_assets_name"),
    )
    op.create_table(
        "registry_versions",
        sa.Column("id", sa.String(32), primary_key=True),
        _asset(),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("message", sa.String(2000), nullable=False),
        sa.Column("author", sa.String(400), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("asset_id", "number", name="uq_registry_versions_number"),
    )
    op.create_table(
        "registry_aliases",
        sa.Column(
            "asset_id",
            sa.String(32),
            sa.ForeignKey("registry_assets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column(
            "version_id", sa.String(32), sa.ForeignKey("registry_versions.id"), nullable=False
        ),
        sa.Column("updated_by", sa.String(400), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "registry_alias_moves",
        sa.Column("id", sa.String(32), primary_key=True),
        _asset(),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(400), nullable=False),
        sa.Column("promotion_id", sa.String(32), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_registry_alias_moves_alias", "registry_alias_moves", ["asset_id", "alias", "at"]
    )
    op.create_table(
        "registry_promotions",
        sa.Column("id", sa.String(32), primary_key=True),
        _workspace(),
        _asset(),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(2000), nullable=False),
        sa.Column("requested_by", sa.String(400), nullable=False),
        sa.Column("requested_label", sa.String(400), nullable=False),
        sa.Column("decided_by", sa.String(400), nullable=True),
        sa.Column("decision_note", sa.String(2000), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_registry_promotions_state", "registry_promotions", ["workspace_id", "state"]
    )
    op.create_table(
        "registry_policies",
        sa.Column(
            "workspace_id",
            sa.String(32),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("environment", sa.String(64), primary_key=True),
        sa.Column("four_eyes", sa.Boolean(), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "registry_policies",
        "registry_promotions",
        "registry_alias_moves",
        "registry_aliases",
        "registry_versions",
        "registry_assets",
        "registry_catalog",
    ):
        op.drop_table(table)
