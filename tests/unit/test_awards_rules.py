"""Awards rules: quotas from the plan."""

import pytest

from services.awards.domain import check_quota
from shared.errors import FieldError
from shared.events import NomineeKind

QUOTA = {"collectives": 1, "individuals": 2}


def test_within_the_quota_passes() -> None:
    check_quota(QUOTA, NomineeKind.collective, 0)
    check_quota(QUOTA, NomineeKind.individual, 1)
    check_quota(None, NomineeKind.individual, 99)


def test_over_the_quota_is_refused_with_the_numbers() -> None:
    with pytest.raises(FieldError) as error:
        check_quota(QUOTA, NomineeKind.collective, 1)
    assert error.value.field == "nominee_kind"
    assert "at most 1 collective (tập thể)" in error.value.expected
    assert "1 already made" in error.value.expected


def test_a_plan_may_set_quotas_per_form_of_award() -> None:
    quota = {
        "collectives": 3,
        "individuals": 3,
        "by_award": {"bang_khen_ldld_tinh": {"collectives": 1, "individuals": 2}},
    }
    check_quota(quota, NomineeKind.collective, 1, "bang_khen_ldld_tinh", 0)
    check_quota(quota, NomineeKind.collective, 2, "giay_khen_ldld_quan", 2)  # no limit of its own
    with pytest.raises(FieldError) as error:
        check_quota(quota, NomineeKind.collective, 1, "bang_khen_ldld_tinh", 1)
    assert (error.value.field, error.value.value) == ("award", "bang_khen_ldld_tinh")
    assert "at most 1 collective (tập thể)" in error.value.expected
    with pytest.raises(FieldError) as error:
        check_quota(quota, NomineeKind.individual, 3, "bang_khen_ldld_tinh", 0)
    assert error.value.field == "nominee_kind"
