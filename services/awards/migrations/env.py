"""Alembic environment of the awards service."""

from services.awards.models import TABLES
from shared.migrations import run_env

run_env(TABLES)
