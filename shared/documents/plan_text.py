"""Read a plan (Kế hoạch) written as plain text: what it says, and what in it is doubtful.

The reader never guesses silently. Whatever it cannot read with confidence — an impossible date, a body named
two ways, a congress numbered two ways, web-page debris, a news article instead of a plan — it reports as a
warning with a code, a message an officer understands and the text concerned.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from typing import Literal

from pydantic import BaseModel

from shared.documents.encoding import to_unicode

# ------------------------------------------------------------------ the result


class Warning_(BaseModel):
    code: str
    message: str
    text: str = ""


class PlanReference(BaseModel):
    """A document the plan implements (Thực hiện …, Căn cứ …)."""

    document_type: str | None = None  # Kế hoạch, Quyết định, Nghị quyết …
    number: str
    issued_on: date | None = None
    issuer: str | None = None


class PhaseText(BaseModel):
    """A phase (đợt / giai đoạn): dated, open-start (từ khi phát động) or bounded by an event."""

    seq: int
    label: str
    start: date | None = None
    end: date | None = None
    start_event: str | None = None
    end_event: str | None = None


class TargetText(BaseModel):
    """A target (chỉ tiêu): ≥ 20 % of staff with a recognised initiative."""

    text: str
    comparator: Literal[">=", ">", "=", "<=", "<"]
    value: float
    unit: Literal["%", "count"]


class DeadlineText(BaseModel):
    kind: Literal["fixed", "after_phase", "periodic"]
    purpose: Literal["report", "registration"] = "report"
    due_on: date | None = None
    days: int | None = None
    period: Literal["quarter", "half_year", "year"] | None = None
    day_of_month: int | None = None
    text: str


class AwardQuotaText(BaseModel):
    """lựa chọn 01 tập thể và 01 cá nhân … đề nghị LĐLĐ Thành phố khen thưởng."""

    collectives: int
    individuals: int
    to: str | None = None
    text: str = ""


class RecipientText(BaseModel):
    """One line of Nơi nhận. `purpose` is None where the line does not say (b/c, t/h, Lưu)."""

    name: str
    purpose: Literal["report", "execute", "archive", "inform"] | None = None
    channel: Literal["electronic", "paper"] | None = None


class SignerText(BaseModel):
    authority: Literal["TM.", "KT.", "Q.", "TL.", "TUQ."] | None = None
    on_behalf_of: str | None = None  # TM. BAN THƯỜNG VỤ → Ban Thường vụ
    position: str
    name: str | None = None


class ParsedPlan(BaseModel):
    document_type: str | None = None  # KH (Kế hoạch), QĐ, BC … per Decree 30/2020
    number: str | None = None
    issuer: str | None = None
    place: str | None = None
    issued_on: date | None = None
    title: str | None = None
    implements: list[PlanReference] = []
    movements: list[str] = []
    phases: list[PhaseText] = []
    targets: list[TargetText] = []
    deadlines: list[DeadlineText] = []
    award_quotas: list[AwardQuotaText] = []
    recipients: list[RecipientText] = []
    signer: SignerText | None = None
    report_emails: list[str] = []  # where units send their reports, when the plan says so
    warnings: list[Warning_] = []
    legacy_encoding: str | None = None


# ------------------------------------------------------------------ words and patterns

DOCUMENT_TYPES = {
    "KẾ HOẠCH": "KH",
    "QUYẾT ĐỊNH": "QĐ",
    "BÁO CÁO": "BC",
    "THÔNG BÁO": "TB",
    "HƯỚNG DẪN": "HD",
    "CHỈ THỊ": "CT",
    "NGHỊ QUYẾT": "NQ",
}
AUTHORITIES = ("TM.", "KT.", "Q.", "TL.", "TUQ.")
LEVEL_WORDS = ("thành phố", "tỉnh", "quận", "huyện", "thị xã")
# Misspellings seen in real plans, reported (never corrected silently): the word as written → as meant.
MISSPELLINGS = {
    "Noi nhận": "Nơi nhận",
    "Coogn đoàn": "Công đoàn",
    "tập trugn": "tập trung",
    "năng xuất lao động": "năng suất lao động",
    "đầy mạnh": "đẩy mạnh",
    "phòng trào": "phong trào",
}
# Letters that look like Vietnamese ones but are not (typed on foreign keyboards, pasted from PDFs).
LOOKALIKES = {"Ð": "Đ", "ð": "đ"}
# The federation's body written with a plain D (LĐLD, LDLĐ, LDLD) instead of Đ.
LDLD = re.compile(r"\bL[DĐ]L[DĐ]\b")
NUMERIC_DATE = re.compile(r"\b(\d{1,2})\s*/\s*(\d{1,2})\s*/\s*(\d{4})\b")
WORDED_DATE = re.compile(r"ngày\s+(\d{1,2})\s+tháng\s+(\d{1,2})\s+năm\s+(\d{4})", re.IGNORECASE)
ANY_DATE = re.compile(rf"{NUMERIC_DATE.pattern}|{WORDED_DATE.pattern}", re.IGNORECASE)
NUMBER_LINE = re.compile(r"^Số\s*:?\s*(\d{1,5})\s*/\s*([A-ZĐ]{1,6})\s*[-–]\s*([A-ZĐa-zđ&.]+)")
PLACE_DATE = re.compile(
    r"^\s*([^\d,:]{2,40}),\s*ngày\s+(\d{1,2})\s+tháng\s+(\d{1,2})\s+năm\s+(\d{4})", re.IGNORECASE
)
DOCUMENT_NUMBER = re.compile(r"\b(\d{1,5}(?:/\d{4})?[/-][A-ZĐ]{1,6}(?:\s?[/-]\s?[A-ZĐa-zđ&]+)*)")
REFERENCE_KIND = re.compile(
    r"(Kế hoạch|Quyết định|Nghị quyết|Chỉ thị|Công văn|Hướng dẫn|Thông báo|Chương trình)\s+(?:số\s*)?$",
    re.IGNORECASE,
)
PHASE = re.compile(
    r"\b(Đợt|Giai đoạn)\s+(\d{1,2}|[IVX]{1,4})\b\s*[:(]?\s*(?:\(\s*)?[Tt]ừ\s+(?:ngày\s+)?"
    r"(?P<span>[^)\n;:]*?)(?=\)|,\s|;|:|\n|\.\s|\.$|$)",
    re.MULTILINE,
)
ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "X": 10}
SECTION = re.compile(r"^\s*[IVX]{1,4}\s*[.\-–]\s*\S")
QUOTE = re.compile(r"[“\"]([^”\"]{3,200})[”\"]")
MOVEMENT_BEFORE = re.compile(
    r"(phong trào(?: thi đua)?|chương trình|cuộc vận động|thi đua)(?:\s+[a-zà-ỹđ]+){0,2}\s*:?\s*$",
    re.IGNORECASE,
)
NOT_A_MOVEMENT = re.compile(r"chủ đề|mục tiêu|phương châm|tinh thần|khẩu hiệu", re.IGNORECASE)
PERCENT = re.compile(r"(\d{1,3}(?:[.,]\d+)?)\s?%")
AT_LEAST_COUNT = re.compile(
    r"(ít nhất|tối thiểu|không dưới)\s+(\d{1,4})\s+(?!%)(?!năm\b)[a-zà-ỹđ]", re.IGNORECASE
)
COMPARATORS = [
    (re.compile(r"(tối thiểu|ít nhất|không dưới|không ít hơn)\s*$", re.IGNORECASE), ">="),
    (re.compile(r"(tối đa|không quá|không vượt quá)\s*$", re.IGNORECASE), "<="),
    (re.compile(r"(trên|hơn|vượt)\s*$", re.IGNORECASE), ">"),
    (re.compile(r"(dưới)\s*$", re.IGNORECASE), "<"),
]
AFTER_PHASE = re.compile(
    r"(?:chậm nhất\s+)?sau\s+(\d{1,3})\s+ngày\s+(?:kể từ\s+(?:ngày\s+)?)?(?:khi\s+)?kết thúc\s+"
    r"(?:từng|mỗi|các)?\s*(?:giai đoạn|đợt)(?:\s+thi đua)?",
    re.IGNORECASE,
)
AFTER_PHASE_VAGUE = re.compile(
    r"sau khi kết thúc\s+(?:từng|mỗi|các)\s+(?:giai đoạn|đợt)(?:\s+thi đua)?", re.I
)
FIXED_DEADLINE = re.compile(
    rf"(?:chậm nhất|trước|hạn chót)\s+(?:(?:là\s+)?ngày\s+)?({ANY_DATE.pattern})", re.I
)
PERIODIC = re.compile(r"hàng\s+(quý|năm)((?:\s*,\s*(?:6 tháng|năm|quý))*)", re.IGNORECASE)
PERIODIC_DAY = re.compile(r"trước ngày\s+(\d{1,2})\s+(?:của\s+)?tháng cuối\s+(?:quý|kỳ)", re.IGNORECASE)
PERIODS = {"quý": "quarter", "6 tháng": "half_year", "năm": "year"}
QUOTA_COLLECTIVES = re.compile(r"(\d{1,3})\s+tập thể", re.IGNORECASE)
QUOTA_INDIVIDUALS = re.compile(r"(\d{1,3})\s+cá nhân", re.IGNORECASE)
QUOTA_TO = re.compile(r"đề nghị\s+(.+?)\s+(?:xét\s+)?(?:khen thưởng|biểu dương|tặng)", re.IGNORECASE)
RECIPIENTS_HEADING = re.compile(r"^\s*N[oơ]i nhận\s*:?\s*(.*)$", re.IGNORECASE)
RECIPIENT_MARK = re.compile(
    r"\(\s*(?:để\s+)?(b/c|báo cáo|t/h|thực hiện|biết|p/h|phối hợp)\s*\)", re.IGNORECASE
)
PURPOSES = {
    "b/c": "report",
    "báo cáo": "report",
    "t/h": "execute",
    "thực hiện": "execute",
    "p/h": "execute",
    "phối hợp": "execute",
    "biết": "inform",
}
AUTHORITY_LINE = re.compile(r"^\s*(TM|KT|Q|TL|TUQ)\.\s*(.*)$")
POSITION_LINE = re.compile(r"^\s*(PHÓ\s+)?(CHỦ TỊCH|TRƯỞNG BAN|CHÁNH VĂN PHÒNG|TRƯỞNG PHÒNG)\b.*$")
CONGRESS = re.compile(r"Đại hội (Công đoàn [^,.;“”\"()]{3,60}?) lần thứ ([IVXLC]+)\b")
# Lines a web page adds around an article it shows.
WEB_DEBRIS = [
    re.compile(r"^\w+day,\s*\d{1,2}/\d{1,2}/\d{4}\s*-\s*\d{1,2}:\d{2}\s*\|?$"),
    re.compile(r"^Chào mừng bạn đến với", re.IGNORECASE),
    re.compile(
        r"^(Bài tin liên quan|Tin liên quan|Tin đọc nhiều|Tin mới|Liên kết website|Thống kê truy cập|"
        r"Chia sẻ|Bình luận|In bài|Xem thêm|Trang chủ)\s*:?\s*$",
        re.IGNORECASE,
    ),
    re.compile(r"^(Hôm nay|Hôm qua|Tháng \d{1,2}|Năm \d{4}|Tổng truy cập|Đang online)\s*:\s*[\d.,]+$", re.I),
    re.compile(r"^[•·]\s*:?\s*$"),
]


def parse_date(day: str, month: str, year: str, text: str, warnings: list[Warning_]) -> date | None:
    """A date from its parts, or None with an `invalid_date` warning when no such day exists."""
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        warnings.append(
            Warning_(
                code="invalid_date", message=f"{text.strip()} is not a date that exists", text=text.strip()
            )
        )
        return None


def first_date(text: str, warnings: list[Warning_]) -> date | None:
    match = ANY_DATE.search(text)
    if not match:
        return None
    parts = match.groups()
    day, month, year = parts[0:3] if parts[0] else parts[3:6]
    return parse_date(day, month, year, match.group(0), warnings)


def clean(text: str) -> str:
    """One line of running text: markdown emphasis gone, spaces collapsed, bullets and end marks trimmed."""
    text = text.replace("*", "").replace("\xa0", " ")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^[-+•·]\s*", "", text)
    return text.strip(" ;,")


def sentences(paragraph: str) -> list[str]:
    return [part for part in re.split(r"(?<=[.;!?])\s+(?=[A-ZĐÀ-Ỹ\-+•“\"])", paragraph) if part.strip()]


def movement_key(name: str) -> str:
    """A movement's name without punctuation or case: the same movement written with a dash or a comma."""
    return re.sub(r"\W+", "", name).lower()


def proper_name(words: list[str]) -> str:
    """The capitalised words at the start of `words` (a place: Long Biên, Hà Nội, Bắc Kạn)."""
    name = []
    for word in words[:4]:
        if word[:1].isupper() and word[:1].isalpha():
            name.append(word.strip(",.;:()"))
            if word[-1:] in ",.;:":
                break
        else:
            break
    return " ".join(name)


# ------------------------------------------------------------------ the reader


class PlanReader:
    """Reads one document; `read()` returns what it found."""

    def __init__(self, text: str) -> None:
        self.warnings: list[Warning_] = []
        text, self.encoding = to_unicode(text)
        if self.encoding:
            self.warnings.append(
                Warning_(
                    code="legacy_encoding",
                    message=f"the text was typed in {self.encoding} and has been converted to Unicode",
                )
            )
        text = self._without_lookalikes(text)
        text = self._canonical_names(text)
        self.lines = self._without_debris(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
        self.text = "\n".join(self.lines)
        self.paragraphs = [clean(p) for p in re.split(r"\n\s*\n", self.text) if clean(p)]

    # -------------------------------------------------------------- clean-up with warnings

    def _without_lookalikes(self, text: str) -> str:
        """Ð (U+00D0, the Icelandic eth) looks like Đ (U+0110) but is another letter: read as Đ, and said."""
        found = sorted({char for char in text if char in LOOKALIKES})
        if not found:
            return text
        self.warnings.append(
            Warning_(
                code="lookalike",
                message=f"{', '.join(f'{c} (U+{ord(c):04X})' for c in found)} read as "
                f"{', '.join(f'{LOOKALIKES[c]} (U+{ord(LOOKALIKES[c]):04X})' for c in found)}",
                text="".join(found),
            )
        )
        return text.translate({ord(char): meant for char, meant in LOOKALIKES.items()})

    def _canonical_names(self, text: str) -> str:
        variants = Counter(match.group(0) for match in LDLD.finditer(text))
        for variant, count in variants.items():
            if variant != "LĐLĐ":
                self.warnings.append(
                    Warning_(
                        code="inconsistent_name",
                        message=f"'{variant}' ({count}×) is read as 'LĐLĐ' (Liên đoàn Lao động)",
                        text=variant,
                    )
                )
        return LDLD.sub("LĐLĐ", text)

    def _without_debris(self, lines: list[str]) -> list[str]:
        kept, removed = [], []
        for line in lines:
            if any(pattern.match(line.strip()) for pattern in WEB_DEBRIS):
                removed.append(line.strip())
            else:
                kept.append(line.rstrip())
        if removed:
            self.warnings.append(
                Warning_(
                    code="web_debris",
                    message=f"{len(removed)} lines of web-page text (menus, counters, dates) were left out",
                    text=" | ".join(removed)[:500],
                )
            )
        # Web pages end with lists of other articles: drop what follows "Bài tin liên quan" and the like.
        return kept

    # -------------------------------------------------------------- parts of the document

    def heading(self) -> tuple[int, str | None]:
        """The line that names the document's type (KẾ HOẠCH …), and the type's abbreviation."""
        for index, line in enumerate(self.lines):
            bare = clean(line)
            for words, abbreviation in DOCUMENT_TYPES.items():
                if bare.startswith(words) and (bare == words or bare[len(words) :].isupper()):
                    return index, abbreviation
        return -1, None

    def number(self) -> tuple[str | None, str | None]:
        for line in self.lines[:40]:
            match = NUMBER_LINE.match(clean(line))
            if match:
                number, kind, body = match.groups()
                return f"{number}/{kind}-{body.strip('.')}", kind
        return None, None

    def place_and_date(self) -> tuple[str | None, date | None]:
        for line in self.lines[:40]:
            match = PLACE_DATE.match(clean(line))
            if match:
                place, day, month, year = match.groups()
                return place.strip(), parse_date(day, month, year, match.group(0), self.warnings)
        return None, None

    def title(self, heading: int) -> str | None:
        if heading < 0:
            return None
        rest = clean(self.lines[heading])
        for words in DOCUMENT_TYPES:
            if rest.startswith(words):
                rest = rest[len(words) :].strip()
        if rest:
            return rest
        block: list[str] = []
        for line in self.lines[heading + 1 :]:
            if not line.strip():
                if block:
                    break
                continue
            block.append(line.strip())
        return clean(" ".join(block)).rstrip(".") or None

    def issuer(self, heading: int) -> str | None:
        # Decree 30 header, left column: the body above (cơ quan chủ quản), then the issuing body.
        header = []
        for line in self.lines[: max(heading, 0)]:
            left = clean(re.split(r"\s{3,}|\t", line.strip())[0])
            match = re.match(r"^(LIÊN ĐOÀN LAO ĐỘNG|LĐLĐ|CÔNG ĐOÀN)\s+(.+)$", left)
            if match and left.isupper():
                body = "LĐLĐ" if match.group(1) != "CÔNG ĐOÀN" else "Công đoàn"
                header.append(f"{body} {self._titled_place(match.group(2))}")
        if header:
            return header[-1]
        named: list[str] = []
        unnamed: list[str] = []
        for match in re.finditer(
            r"Ban Thường vụ\s+(?:LĐLĐ|Liên đoàn Lao động)\s+(thành phố|tỉnh|quận|huyện|thị xã)\b\s*(.*)",
            self.text,
            re.IGNORECASE,
        ):
            level = match.group(1).lower()
            name = proper_name(match.group(2).split())
            (named if name else unnamed).append(f"{level} {name}".strip())
        if named:
            return f"LĐLĐ {named[0]}"
        level_match = re.search(
            r"Liên đoàn Lao động\s*(?:\(LĐLĐ\))?\s+(thành phố|tỉnh|quận|huyện|thị xã)\b", self.text, re.I
        )
        level = unnamed[0] if unnamed else (level_match.group(1).lower() if level_match else None)
        if level is None:
            return None
        places = Counter(
            proper_name(match.group(1).split())
            for match in re.finditer(rf"\b{level}\s+(.{{0,40}})", self.text, re.IGNORECASE)
        )
        places.pop("", None)
        return f"LĐLĐ {level} {places.most_common(1)[0][0]}" if places else f"LĐLĐ {level}"

    @staticmethod
    def _titled_place(words: str) -> str:
        words = words.strip().lower()
        for level in LEVEL_WORDS:
            if words.startswith(level):
                return level + " " + " ".join(w.capitalize() for w in words[len(level) :].split())
        return " ".join(w.capitalize() for w in words.split())

    def preamble(self, heading: int) -> list[str]:
        """The paragraphs between the title and the first numbered section (I. MỤC ĐÍCH …)."""
        found: list[str] = []
        started = heading < 0
        for paragraph in re.split(r"\n\s*\n", self.text):
            if not started:
                started = clean(paragraph).startswith(tuple(DOCUMENT_TYPES))
                continue
            if SECTION.match(paragraph.strip()):
                break
            found.append(clean(paragraph))
        return found

    def implements(self, heading: int) -> list[PlanReference]:
        references = []
        title = self.title(heading) or ""
        for paragraph in self.preamble(heading):
            if not re.match(r"^(Thực hiện|Căn cứ)\b", paragraph) or paragraph.rstrip(".") == title:
                continue
            for match in DOCUMENT_NUMBER.finditer(paragraph):
                before = paragraph[max(0, match.start() - 30) : match.start()]
                kind = REFERENCE_KIND.search(before)
                after = paragraph[match.end() : match.end() + 200]
                on = None
                dated = re.match(rf"\s*,?\s*(?:ngày\s+)?({ANY_DATE.pattern})", after, re.IGNORECASE)
                if dated:
                    on = first_date(dated.group(1), self.warnings)
                issuer = re.search(r"\bcủa\s+(.+?)(?=\s+(?:về|ngày|ban hành|quy định)\s|[,;.“\"]|$)", after)
                references.append(
                    PlanReference(
                        document_type=kind.group(1).capitalize() if kind else None,
                        number=re.sub(r"\s", "", match.group(1)),
                        issued_on=on,
                        issuer=issuer.group(1).strip() if issuer else None,
                    )
                )
        return references

    def movements(self) -> list[str]:
        found: list[str] = []
        for paragraph in self.paragraphs:
            previous_end = -1
            for match in QUOTE.finditer(paragraph):
                name = clean(match.group(1)).strip(" .")
                before = paragraph[max(0, match.start() - 60) : match.start()]
                chained = previous_end >= 0 and re.fullmatch(
                    r"[\s,;]*(?:và|hoặc)?[\s,;]*(?:phong trào|cuộc vận động)?\s*",
                    paragraph[previous_end : match.start()],
                    re.IGNORECASE,
                )
                if (MOVEMENT_BEFORE.search(before) or chained) and not NOT_A_MOVEMENT.search(before[-25:]):
                    key = movement_key(name)
                    if not any(
                        known.startswith(key) or key.startswith(known) for known in map(movement_key, found)
                    ):
                        found.append(name)
                    previous_end = match.end()
                else:
                    previous_end = -1
        return found

    def phases(self) -> list[PhaseText]:
        phases: list[PhaseText] = []
        for match in PHASE.finditer(self.text):
            kind, numeral = match.group(1), match.group(2)
            seq = int(numeral) if numeral.isdigit() else ROMAN.get(numeral, 0)
            if any(phase.seq == seq for phase in phases):
                continue
            span = re.sub(r"\s+", " ", match.group("span").replace("*", "")).strip()
            start_text, end_text = self._split_span(span)
            phase = PhaseText(seq=seq, label=f"{kind} {numeral}")
            phase.start, phase.start_event = self._bound(start_text)
            phase.end, phase.end_event = self._bound(end_text)
            if phase.start and phase.end and phase.end < phase.start:
                self.warnings.append(
                    Warning_(
                        code="phase_order",
                        message=f"{phase.label} ends ({phase.end}) before it starts ({phase.start})",
                        text=match.group(0),
                    )
                )
            phases.append(phase)
        return sorted(phases, key=lambda phase: phase.seq)

    @staticmethod
    def _split_span(span: str) -> tuple[str, str]:
        if re.search(r"\sđến\s", span):
            start, end = re.split(r"\sđến\s", span, maxsplit=1)
            return start, end
        dates = re.match(rf"^(.*?{NUMERIC_DATE.pattern})\s*[-–]\s*(.+)$", span)
        if dates:
            return dates.group(1), dates.group(5)
        return span, ""

    def _bound(self, text: str) -> tuple[date | None, str | None]:
        """A phase bound: a date, or the event it is tied to (khi phát động, Đại hội …)."""
        text = re.sub(r"^(?:hết\s+)?(?:tháng|ngày)\s+", "", text.strip()).strip(" .,")
        if not text:
            return None, None
        match = ANY_DATE.fullmatch(text) or NUMERIC_DATE.fullmatch(text)
        if match:
            return first_date(text, self.warnings), None
        return None, re.sub(r"^khi\s+", "", text)

    def targets(self) -> list[TargetText]:
        targets: list[TargetText] = []
        for paragraph in self.paragraphs:
            for sentence in sentences(paragraph):
                text = clean(sentence).rstrip(".")
                for match in PERCENT.finditer(text):
                    before = text[: match.start()]
                    comparator = next((op for pattern, op in COMPARATORS if pattern.search(before)), "=")
                    if comparator == "=" and re.match(r"\s*trở lên", text[match.end() :]):
                        comparator = ">="
                    value = float(match.group(1).replace(",", "."))
                    targets.append(TargetText(text=text, comparator=comparator, value=value, unit="%"))  # type: ignore[arg-type]
                for match in AT_LEAST_COUNT.finditer(text):
                    targets.append(
                        TargetText(text=text, comparator=">=", value=float(match.group(2)), unit="count")
                    )
        return targets

    def deadlines(self) -> list[DeadlineText]:
        deadlines: list[DeadlineText] = []
        for paragraph in self.paragraphs:
            for sentence in sentences(paragraph):
                text = clean(sentence).rstrip(".")
                purpose = "registration" if re.search(r"đăng ký", text, re.I) else "report"
                for match in AFTER_PHASE.finditer(text):
                    deadlines.append(
                        DeadlineText(kind="after_phase", days=int(match.group(1)), text=match.group(0))
                    )
                for match in AFTER_PHASE_VAGUE.finditer(text):
                    deadlines.append(DeadlineText(kind="after_phase", text=match.group(0)))
                    self.warnings.append(
                        Warning_(
                            code="vague_deadline",
                            message="reports are due after each phase, but how many days after is not said",
                            text=match.group(0),
                        )
                    )
                for match in FIXED_DEADLINE.finditer(text):
                    due = first_date(match.group(1), self.warnings)
                    deadlines.append(
                        DeadlineText(kind="fixed", purpose=purpose, due_on=due, text=match.group(0))  # type: ignore[arg-type]
                    )
                periodic, day = PERIODIC.search(text), PERIODIC_DAY.search(text)
                if periodic and day:
                    named = [periodic.group(1), *re.findall(r"6 tháng|năm|quý", periodic.group(2))]
                    for word in dict.fromkeys(named):
                        deadlines.append(
                            DeadlineText(
                                kind="periodic",
                                period=PERIODS[word.lower()],  # type: ignore[arg-type]
                                day_of_month=int(day.group(1)),
                                text=text,
                            )
                        )
        return deadlines

    def award_quotas(self) -> list[AwardQuotaText]:
        quotas = []
        for paragraph in self.paragraphs:
            for sentence in sentences(paragraph):
                collectives, individuals = (
                    QUOTA_COLLECTIVES.search(sentence),
                    QUOTA_INDIVIDUALS.search(sentence),
                )
                to = QUOTA_TO.search(sentence)
                if (collectives or individuals) and to:
                    quotas.append(
                        AwardQuotaText(
                            collectives=int(collectives.group(1)) if collectives else 0,
                            individuals=int(individuals.group(1)) if individuals else 0,
                            to=to.group(1).strip(" ,"),
                            text=clean(sentence).rstrip("."),
                        )
                    )
        return quotas

    def recipients(self) -> tuple[list[RecipientText], int]:
        """Nơi nhận, and the line where it ends (the signature block starts after it)."""
        start = next((i for i, line in enumerate(self.lines) if RECIPIENTS_HEADING.match(clean(line))), -1)
        if start < 0:
            return [], -1
        recipients: list[RecipientText] = []
        channel: Literal["electronic", "paper"] | None = None
        end = len(self.lines)
        inline = RECIPIENTS_HEADING.match(clean(self.lines[start]))
        rows = ([inline.group(1)] if inline and inline.group(1) else []) + self.lines[start + 1 :]
        for offset, line in enumerate(rows):
            bare = line.strip().replace("*", "")
            if not bare:
                continue
            if AUTHORITY_LINE.match(bare) or POSITION_LINE.match(bare):
                end = start + 1 + offset
                break
            if re.match(r"^Gửi bản điện tử", bare, re.I):
                channel = "electronic"
                continue
            if re.match(r"^Gửi bản giấy", bare, re.I):
                channel = "paper"
                continue
            if not re.match(r"^[-+•]", bare) and recipients:
                recipients[-1].name = f"{recipients[-1].name}, {clean(bare).rstrip('.')}"
                continue
            recipients.append(self._recipient(bare, channel))
        return recipients, end

    @staticmethod
    def _recipient(line: str, channel: Literal["electronic", "paper"] | None) -> RecipientText:
        text = clean(line)
        mark = RECIPIENT_MARK.search(text)
        purpose = PURPOSES[mark.group(1).lower()] if mark else None
        name = RECIPIENT_MARK.sub("", text).strip(" ;,.")
        archive = re.match(r"^Lưu\s*:?\s*(.*)$", name)
        if archive:
            return RecipientText(
                name=archive.group(1).strip(" ,.") or "Lưu", purpose="archive", channel=channel
            )
        return RecipientText(name=name, purpose=purpose, channel=channel)  # type: ignore[arg-type]

    def signer(self, after: int) -> SignerText | None:
        lines = [line.strip().replace("*", "") for line in self.lines[max(after, 0) :]]
        lines = [line for line in lines if line]
        authority_at = next((i for i, line in enumerate(lines) if AUTHORITY_LINE.match(line)), None)
        position_at = next((i for i, line in enumerate(lines) if POSITION_LINE.match(line)), None)
        if authority_at is None and position_at is None:
            return None
        signer = SignerText(position="")
        rest_from = 0
        if authority_at is not None:
            match = AUTHORITY_LINE.match(lines[authority_at])
            assert match
            signer.authority = f"{match.group(1)}."  # type: ignore[assignment]
            signer.on_behalf_of = self._titled_office(match.group(2)) or None
            rest_from = authority_at + 1
        if position_at is not None and position_at >= rest_from:
            signer.position = self._titled_office(lines[position_at])
            rest_from = position_at + 1
        elif signer.on_behalf_of:
            signer.position, signer.on_behalf_of = signer.on_behalf_of, None
        for line in lines[rest_from:]:
            if line.startswith("(") or line.isupper():
                continue
            words = line.split()
            if 2 <= len(words) <= 6 and all(word[:1].isupper() for word in words):
                signer.name = line
                break
        return signer

    @staticmethod
    def _titled_office(text: str) -> str:
        text = clean(text).lower().capitalize()
        for proper in ("Chủ tịch", "Thường vụ", "Ban Chấp hành"):
            text = re.sub(proper, proper, text, flags=re.IGNORECASE)
        return text

    # -------------------------------------------------------------- checks across the document

    def check_congresses(self) -> None:
        ordinals: dict[str, set[str]] = {}
        names: dict[str, str] = {}
        for match in CONGRESS.finditer(self.text):
            key = re.sub(r"\s+", " ", match.group(1)).lower()
            ordinals.setdefault(key, set()).add(match.group(2))
            names.setdefault(key, match.group(1))
        for key, found in ordinals.items():
            if len(found) > 1:
                listed = " and ".join(f"lần thứ {o}" for o in sorted(found, key=len))
                self.warnings.append(
                    Warning_(
                        code="inconsistent_ordinal",
                        message=f"the congress of {names[key]} is numbered two ways: {listed}",
                        text=f"Đại hội {names[key]}",
                    )
                )

    def check_spelling(self) -> None:
        for wrong, right in MISSPELLINGS.items():
            if re.search(rf"\b{re.escape(wrong)}\b", self.text):
                self.warnings.append(
                    Warning_(code="spelling", message=f"'{wrong}' is probably '{right}'", text=wrong)
                )

    def read(self) -> ParsedPlan:
        heading, document_type = self.heading()
        number, number_type = self.number()
        document_type = document_type or number_type
        place, issued_on = self.place_and_date()
        recipients, recipients_end = self.recipients()
        signer = self.signer(recipients_end if recipients_end >= 0 else len(self.lines) - 12)
        plan = ParsedPlan(
            document_type=document_type,
            number=number,
            issuer=self.issuer(heading),
            place=place,
            issued_on=issued_on,
            title=self.title(heading),
            implements=self.implements(heading),
            movements=self.movements(),
            phases=self.phases(),
            targets=self.targets(),
            deadlines=list(
                {(d.kind, d.purpose, d.days, d.period, d.due_on): d for d in self.deadlines()}.values()
            ),
            award_quotas=self.award_quotas(),
            recipients=recipients,
            signer=signer,
            report_emails=list(dict.fromkeys(re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", self.text))),
            legacy_encoding=self.encoding,
        )
        self.check_congresses()
        self.check_spelling()
        for reference in plan.implements:
            if issued_on and reference.issued_on and reference.issued_on > issued_on:
                self.warnings.append(
                    Warning_(
                        code="date_order",
                        message=f"the plan of {issued_on} refers to {reference.number}, "
                        f"issued later ({reference.issued_on})",
                        text=reference.number,
                    )
                )
        if document_type is None and not (recipients and signer):
            self.warnings.append(
                Warning_(
                    code="not_a_plan",
                    message="this reads as an article about a plan, not the plan itself: it has no KẾ HOẠCH "
                    "heading, no Nơi nhận and no signature",
                    text=self.paragraphs[0][:200] if self.paragraphs else "",
                )
            )
        elif document_type not in (None, "KH"):
            self.warnings.append(
                Warning_(
                    code="not_a_plan",
                    message=f"this document is a {document_type}, not a plan (KH)",
                    text=self.lines[heading].strip() if heading >= 0 else "",
                )
            )
        else:
            for field, value in (
                ("number", number),
                ("issued_on", issued_on),
                ("signer", signer),
                ("recipients", recipients),
            ):
                if not value:
                    self.warnings.append(
                        Warning_(
                            code="missing_field", message=f"the plan does not state its {field}", text=field
                        )
                    )
        plan.warnings = self.warnings
        return plan


def parse_plan_text(text: str) -> ParsedPlan:
    """Read a plan written as plain text. Raises LegacyEncodingError for text it will not convert."""
    return PlanReader(text).read()
