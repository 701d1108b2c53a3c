"""Durable state: SQLModel tables, the database wrapper, the FHIR resource store and migrations."""
