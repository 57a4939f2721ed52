"""JSON columns are written and read with orjson only where it gives what the standard library gives."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.storage import json_text, json_value

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # any size: beyond 64 bits too
    | st.floats()  # NaN and infinities too
    | st.text()  # lone surrogates too
)
DOCUMENTS = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@given(DOCUMENTS)
def test_a_column_written_and_read_back_holds_what_the_standard_library_would(value: Any) -> None:
    text = json_text(value)
    assert canonical(json.loads(text)) == canonical(json.loads(json.dumps(value)))
    assert canonical(json_value(text)) == canonical(value)


def test_values_the_standard_library_writes_differently_or_refuses_are_left_to_it() -> None:
    assert json_text({1: "một"}) == json.dumps({1: "một"})  # keys that are not text
    assert json_text([float("nan")]) == "[NaN]"  # orjson would write null
    assert json_text(-(2**63) - 1) == str(-(2**63) - 1)
    for refused in ({"day": date(2023, 3, 2)}, {"units": {"g1"}}):
        with pytest.raises(TypeError):
            json_text(refused)
