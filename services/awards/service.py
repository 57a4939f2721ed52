"""The awards service, as the runtime hosts it."""

from pathlib import Path

from services.awards.api import build_api
from services.awards.handlers import build_handlers
from shared.events import AwardDecided, AwardRevoked, NominationForwarded, NominationMade
from shared.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="awards",
    migrations=Path(__file__).parent / "migrations",
    handlers=build_handlers,
    api=build_api,
    publishes=(NominationMade, NominationForwarded, AwardDecided, AwardRevoked),
)
