"""A service process tells Python's garbage collector how often to pass, as its settings say."""

import gc

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from services.cli import collect_less
from shared.settings import Settings


def test_the_thresholds_come_from_the_environment_and_bad_ones_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).gc_thresholds == (10_000, 50, 100)  # type: ignore[call-arg]
    monkeypatch.setenv("THIDUA_GC_THRESHOLDS", "[700, 10, 10]")
    assert Settings(_env_file=None).gc_thresholds == (700, 10, 10)  # type: ignore[call-arg]
    for bad in ("[-1, 10, 10]", "[700, 10]", "lots"):
        monkeypatch.setenv("THIDUA_GC_THRESHOLDS", bad)
        with pytest.raises((ValidationError, SettingsError), match="gc_thresholds"):
            Settings(_env_file=None)  # type: ignore[call-arg]


def test_what_the_process_loaded_is_left_out_of_the_collector_s_passes() -> None:
    before = gc.get_threshold()
    try:
        collect_less((5_000, 20, 40))
        assert gc.get_threshold() == (5_000, 20, 40)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
