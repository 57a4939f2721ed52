"""The reporting service, as the runtime hosts it."""

from pathlib import Path

from services.reporting.api import build_api
from services.reporting.handlers import build_handlers, measure_completeness, run_deadline_check
from shared.events import (
    ReportAccepted,
    ReportApproved,
    ReportConsolidated,
    ReportOverdue,
    ReportReturned,
    ReportSubmitted,
)
from shared.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="reporting",
    migrations=Path(__file__).parent / "migrations",
    handlers=build_handlers,
    api=build_api,
    publishes=(
        ReportSubmitted,
        ReportOverdue,
        ReportConsolidated,
        ReportApproved,
        ReportReturned,
        ReportAccepted,
    ),
    ticks=(run_deadline_check, measure_completeness),
)
