"""Alembic environment of the notifications service."""

from services.notifications.models import TABLES
from shared.migrations import run_env

run_env(TABLES)
