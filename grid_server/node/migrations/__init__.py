"""Alembic migrations of the node database, run programmatically (no alembic.ini)."""
