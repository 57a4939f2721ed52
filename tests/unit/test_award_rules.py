"""Award rules by year: each failed rule is named, with the facts that failed it."""

import pytest

from services.awards.rules import Facts, check, rules_for
from shared.errors import FieldError

BOOK = rules_for(2024)  # the 2023 file, still in force
GOOD_COLLECTIVE = Facts(
    members=20, members_completing=20, lao_dong_tien_tien=15, chien_si_thi_dua=1, reports_on_time=True
)


def names(code: str, kind: str, facts: Facts) -> list[str]:
    return [failure.rule for failure in check(code, BOOK.award(code), kind, facts)]


def test_the_rules_of_a_year_are_the_newest_file_not_after_it() -> None:
    assert rules_for(2031).year == rules_for(2023).year == 2023
    with pytest.raises(FieldError) as error:
        rules_for(2019)
    assert (error.value.field, error.value.value) == ("year", 2019)
    with pytest.raises(FieldError) as error:
        BOOK.award("huan_chuong")
    assert error.value.field == "award" and "tap_the_lao_dong_xuat_sac" in error.value.expected


def test_tap_the_lao_dong_xuat_sac_needs_everyone_done_70_percent_ldtt_and_one_cstd() -> None:
    assert names("tap_the_lao_dong_xuat_sac", "collective", GOOD_COLLECTIVE) == []
    short = Facts(
        members=20, members_completing=19, lao_dong_tien_tien=13, chien_si_thi_dua=0, reports_on_time=True
    )
    failures = check(
        "tap_the_lao_dong_xuat_sac", BOOK.award("tap_the_lao_dong_xuat_sac"), "collective", short
    )
    assert [f.rule for f in failures] == [
        "min_members_completing_share",
        "min_lao_dong_tien_tien_share",
        "min_chien_si_thi_dua",
    ]
    assert failures[1].facts == {"members": 20, "count": 13, "share": 0.65}


def test_reports_on_time_and_the_kind_of_nominee() -> None:
    late = Facts(**{**vars(GOOD_COLLECTIVE), "reports_on_time": False})
    assert names("tap_the_lao_dong_xuat_sac", "collective", late) == ["reports_on_time"]
    assert names("tap_the_lao_dong_xuat_sac", "individual", GOOD_COLLECTIVE) == ["nominee"]


def test_chien_si_requires_lao_dong_tien_tien_the_same_year_and_a_share_cap() -> None:
    holder = Facts(titles_held=["lao_dong_tien_tien"], nominating_unit_members=20, same_award_from_unit=2)
    assert names("chien_si_thi_dua_co_so", "individual", holder) == []
    failures = check(
        "chien_si_thi_dua_co_so",
        BOOK.award("chien_si_thi_dua_co_so"),
        "individual",
        Facts(titles_held=[], nominating_unit_members=20, same_award_from_unit=3),
    )
    assert [f.rule for f in failures] == ["requires_titles", "max_share_of_members"]
    assert failures[1].facts == {"already": 3, "allowed": 3}


def test_one_achievement_earns_one_award() -> None:
    twice = Facts(**{**vars(GOOD_COLLECTIVE), "achievements_already_rewarded": ["sk-2024-07"]})
    assert names("tap_the_lao_dong_xuat_sac", "collective", twice) == ["one_award_per_achievement"]
