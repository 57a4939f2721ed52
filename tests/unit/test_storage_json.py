"""JSON columns are written and read with orjson only where it gives what the standard library gives."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from shared.storage import _records, json_text, json_value

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


RECORDS = sa.Table(
    "records",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("note", sa.JSON),
    sa.Column("share", sa.Float),
    sa.Column("content", sa.LargeBinary),
    sa.Column("at", sa.DateTime(timezone=True)),
)
NAMES = ["id", "document", "note", "share", "content", "at"]


def record(**values: Any) -> dict[str, Any]:
    at = datetime(2026, 12, 7, 9, 30, 0, 250000, tzinfo=UTC)
    usual = {
        "id": 1,
        "document": {"a": [1, "b"]},
        "note": None,
        "share": 0.5,
        "content": b"\x00\xff",
        "at": at,
    }
    return usual | values


def test_rows_go_to_postgresql_as_one_json_text_of_each_column_s_text_form() -> None:
    text = _records(RECORDS, NAMES, [record(), record(id=2, content=None)])
    assert text is not None
    assert json.loads(text) == [
        {
            "id": 1,
            "document": {"a": [1, "b"]},
            "note": None,
            "share": 0.5,
            "content": "\\x00ff",
            "at": "2026-12-07T09:30:00.250000+00:00",
        },
        {
            "id": 2,
            "document": {"a": [1, "b"]},
            "note": None,
            "share": 0.5,
            "content": None,
            "at": "2026-12-07T09:30:00.250000+00:00",
        },
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"document": None},  # JSON null where a value is wanted: the recordset would read an SQL null
        {"document": {"long": 10**30}},  # beyond 64 bits
        {"document": [float("inf")]},  # orjson would write null
        {"document": {1: "một"}},  # a key that is not text
        {"share": float("nan")},
        {"id": 2**64},
    ],
)
def test_rows_json_would_change_go_as_arrays(values: dict[str, Any]) -> None:
    assert _records(RECORDS, NAMES, [record(), record(**values)]) is None
