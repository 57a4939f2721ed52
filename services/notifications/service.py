"""The notifications service, as the runtime hosts it."""

from pathlib import Path

from services.notifications.api import build_api
from services.notifications.handlers import build_handlers, dispatch, send_reminders
from shared.events import NotificationDelivered, NotificationFailed
from shared.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="notifications",
    migrations=Path(__file__).parent / "migrations",
    handlers=build_handlers,
    api=build_api,
    # The stack that produced an event tells its own units: mirrored events are not told twice.
    consumes_mirrored=False,
    publishes=(NotificationDelivered, NotificationFailed),
    ticks=(send_reminders, dispatch),
)
