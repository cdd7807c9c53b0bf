"""Append-only audit log of every mutating call and every denied request."""
