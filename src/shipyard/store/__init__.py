"""Metadata store: SQLAlchemy engine, declarative base, Alembic migrations."""

from shipyard.store.base import Base, UTCDateTime, new_id, utcnow
from shipyard.store.db import Database

__all__ = ["Base", "Database", "UTCDateTime", "new_id", "utcnow"]
