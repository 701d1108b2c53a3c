"""Alembic migration scripts (see MIGRATION-NOTES.md)."""
