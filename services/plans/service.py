"""The plans service, as the runtime hosts it."""

from pathlib import Path

from services.plans.api import build_api
from services.plans.handlers import build_handlers, run_phase_scheduler
from shared.events import (
    OrgUnitMoved,
    OrgUnitRegistered,
    PhaseClosed,
    PhaseOpened,
    PlanAcknowledged,
    PlanAmended,
    PlanClosed,
    PlanIssued,
    PlanRescheduled,
    PlanRevoked,
)
from shared.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="plans",
    migrations=Path(__file__).parent / "migrations",
    handlers=build_handlers,
    api=build_api,
    publishes=(
        OrgUnitRegistered,
        OrgUnitMoved,
        PlanIssued,
        PlanRescheduled,
        PlanAmended,
        PlanRevoked,
        PlanClosed,
        PlanAcknowledged,
        PhaseOpened,
        PhaseClosed,
    ),
    ticks=(run_phase_scheduler,),
)
