"""Award rules as versioned configuration: one YAML file per year (rules/<year>.yaml), the newest not
after a nomination's year applies to it. Each check names the rule and the facts that failed it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from shared.errors import FieldError
from shared.events import Level

RULES_DIR = Path(__file__).parent / "rules"


class Criteria(BaseModel):
    """What a machine can check of an award."""

    model_config = ConfigDict(extra="forbid")

    reports_on_time: bool = False
    requires_titles: list[str] = []
    max_share_of_members: float | None = Field(default=None, gt=0, le=1)
    min_members_completing_share: float | None = Field(default=None, ge=0, le=1)
    min_lao_dong_tien_tien_share: float | None = Field(default=None, ge=0, le=1)
    min_chien_si_thi_dua: int | None = Field(default=None, ge=0)


class AwardRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    nominee: Literal["individual", "collective", "any"]
    granted_by: Level
    criteria: Criteria


class Council(BaseModel):
    model_config = ConfigDict(extra="forbid")
    majority: float = Field(gt=0, lt=1)


class RuleBook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    year: int
    council: Council
    awards: dict[str, AwardRule]

    def award(self, code: str) -> AwardRule:
        rule = self.awards.get(code)
        if rule is None:
            raise FieldError(
                "award", code, f"an award of the {self.year} rules ({', '.join(sorted(self.awards))})"
            )
        return rule


@lru_cache
def rule_books() -> dict[int, RuleBook]:
    books = {}
    for path in sorted(RULES_DIR.glob("*.yaml")):
        book = RuleBook.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        books[book.year] = book
    return books


def rules_for(year: int) -> RuleBook:
    """The rules in force for a year: the newest file not after it."""
    years = [y for y in rule_books() if y <= year]
    if not years:
        raise FieldError("year", year, f"a year with award rules (from {min(rule_books())})")
    return rule_books()[max(years)]


@dataclass
class Facts:
    """What a nomination says about its nominee, and what thidua knows."""

    members: int | None = None
    members_completing: int | None = None
    lao_dong_tien_tien: int | None = None
    chien_si_thi_dua: int | None = None
    titles_held: list[str] = field(default_factory=list)
    reports_on_time: bool | None = None  # the nominee unit's reports for the plan: all in, on time
    same_award_from_unit: int = 0  # nominations for this award already made by the nominating unit
    nominating_unit_members: int | None = None
    achievements_already_rewarded: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Failure:
    rule: str
    message: str
    facts: dict[str, Any]


def check(code: str, rule: AwardRule, kind: str, facts: Facts) -> list[Failure]:
    """Every rule the nomination fails, by name, with the facts that failed it."""
    failures: list[Failure] = []
    c = rule.criteria
    if facts.achievements_already_rewarded:
        failures.append(
            Failure(
                "one_award_per_achievement",
                "achievements not already put forward for another award",
                {"already_rewarded": facts.achievements_already_rewarded},
            )
        )
    if rule.nominee != "any" and rule.nominee != kind:
        failures.append(Failure("nominee", f"{rule.name} is for a {rule.nominee}", {"nominee_kind": kind}))
    if c.reports_on_time and facts.reports_on_time is not True:
        failures.append(
            Failure(
                "reports_on_time",
                "every report of the plan, in and on time",
                {"reports_on_time": facts.reports_on_time},
            )
        )
    for title in c.requires_titles:
        if title not in facts.titles_held:
            failures.append(
                Failure("requires_titles", f"holds {title} the same year", {"titles_held": facts.titles_held})
            )
    if c.max_share_of_members is not None:
        members = facts.nominating_unit_members or 0
        allowed = int(members * c.max_share_of_members)
        if facts.same_award_from_unit + 1 > allowed:
            failures.append(
                Failure(
                    "max_share_of_members",
                    f"at most {c.max_share_of_members:.0%} of the unit's {members} members",
                    {"already": facts.same_award_from_unit, "allowed": allowed},
                )
            )
    ratios = (
        ("min_members_completing_share", c.min_members_completing_share, facts.members_completing),
        ("min_lao_dong_tien_tien_share", c.min_lao_dong_tien_tien_share, facts.lao_dong_tien_tien),
    )
    for name, minimum, count in ratios:
        if minimum is None:
            continue
        share = (count or 0) / facts.members if facts.members else 0.0
        if share < minimum:
            failures.append(
                Failure(
                    name,
                    f"at least {minimum:.0%} of members",
                    {"members": facts.members, "count": count, "share": round(share, 4)},
                )
            )
    if c.min_chien_si_thi_dua is not None and (facts.chien_si_thi_dua or 0) < c.min_chien_si_thi_dua:
        failures.append(
            Failure(
                "min_chien_si_thi_dua",
                f"at least {c.min_chien_si_thi_dua} Chiến sĩ thi đua cơ sở",
                {"chien_si_thi_dua": facts.chien_si_thi_dua},
            )
        )
    return failures
