"""What a service is, to the runtime that hosts it: its database, consumer, API and periodic steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter

from shared.clock import Clock
from shared.consumer import EventHandlers
from shared.events import Event
from shared.metrics import Metrics
from shared.settings import Settings
from shared.storage import Database


@dataclass
class ServiceContext:
    """Everything a service's handlers, API and periodic steps need, wired once at start-up."""

    name: str
    settings: Settings
    db: Database
    clock: Clock
    metrics: Metrics


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    migrations: Path
    handlers: Callable[[ServiceContext], EventHandlers]
    api: Callable[[ServiceContext], APIRouter]
    # The events this service produces (for the AsyncAPI document; the e2e tests hold it to this).
    publishes: tuple[type[Event], ...] = ()
    # Whether it also consumes the streams mirrored in from other stacks (see Settings.mirrored_prefixes).
    consumes_mirrored: bool = True
    # Steps run every tick (schedulers: phases to open or close, deadlines that passed).
    ticks: tuple[Callable[[ServiceContext], int | None], ...] = field(default_factory=tuple)
