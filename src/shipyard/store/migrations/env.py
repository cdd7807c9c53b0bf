"""Alembic environment: runs on the connection `Database.upgrade` hands over."""

from alembic import context
from sqlalchemy import text

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    # Replicas starting together must not race on the same migration.
    connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
