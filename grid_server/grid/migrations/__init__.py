"""Alembic migrations of the grid database, run programmatically (no alembic.ini)."""
