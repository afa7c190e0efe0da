"""Alembic environment of the node's migrations (see grid_server.db_migrations)."""

from grid_server.db_migrations import run_environment

run_environment()
