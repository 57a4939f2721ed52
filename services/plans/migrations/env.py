"""Alembic environment of the plans service."""

from services.plans.models import TABLES
from shared.migrations import run_env

run_env(TABLES)
