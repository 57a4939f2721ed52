"""Alembic environment of the reporting service."""

from services.reporting.models import TABLES
from shared.migrations import run_env

run_env(TABLES)
