"""Text as it arrives: bytes in UTF-8, UTF-16 or a legacy Vietnamese encoding, composed or decomposed.

Older offices still type in TCVN3 (the ".Vn" fonts, bảng mã ABC) or VNI. Such text reaches us as bytes that
decode to Latin-1 look-alikes ("Céng hoµ" for "Cộng hoà"). TCVN3 maps one byte to one letter and is
converted; VNI spreads one letter over two characters and is refused with a clear message instead of a guess.
"""

from __future__ import annotations

import re
import unicodedata

from shared.documents.errors import DocumentError

# TCVN 5712:1993 VN3 (lower-case letters; the upper-case ".VnTimeH" fonts reuse the same bytes).
_TCVN3 = dict(
    zip(
        "µ¸¶·¹¨»¾¼½Æ©ÇÊÈÉË®ÌÐÎÏÑªÒÕÓÔÖ×ÝØÜÞßãáâä«åèæçé¬êíëìîïóñòô\xadõøö÷ùúýûüþ¡¢§£¤¥¦",
        "àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵĂÂĐÊÔƠƯ",
        strict=True,
    )
)
# Characters TCVN3 text is full of that Vietnamese written in Unicode never uses.
_TCVN3_ONLY = set("µ¸¶·¹¨»¾¼½Æ©ÇË®ÎÏÑªÖ×ØÜÞßä«åæç¬ëîïñ\xadö÷øûüþ¡¢§£¤¥¦")
# VNI: a base letter followed by a tone or vowel mark typed as a separate Latin-1 character.
_VOWELS = set("aeiouyAEIOUY")
_VNI_PAIR = re.compile(r"[aeiouyAEIOUY][øùûõïäâêåæçèéëì]")
# Letters only Unicode Vietnamese has: none of them exists in Windows-1252.
_VIETNAMESE = re.compile(r"[ăđĩũơưĂĐĨŨƠƯ\u1ea0-\u1ef9]")


class LegacyEncodingError(DocumentError):
    """Text in a legacy encoding that thidua does not convert."""

    def __init__(self, message: str) -> None:
        super().__init__("document", message)


def decode(data: bytes) -> str:
    """Bytes to text: UTF-8 (with or without a byte-order mark), UTF-16 with one, else Windows-1252, which
    is how TCVN3 and VNI files read before conversion."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def legacy_encoding(text: str) -> str | None:
    """'TCVN3' or 'VNI' when the text is written in that legacy encoding rather than in Unicode."""
    unicode_letters = len(_VIETNAMESE.findall(unicodedata.normalize("NFC", text)))
    # A TCVN3 letter stands in for a whole vowel, so it follows a consonant; VNI marks follow their vowel.
    tcvn3 = sum(
        1
        for before, char in zip(" " + text, text, strict=False)
        if char in _TCVN3_ONLY and before not in _VOWELS
    )
    vni = len(_VNI_PAIR.findall(text))
    if max(tcvn3, vni) < 3 or max(tcvn3, vni) <= unicode_letters:
        return None
    return "VNI" if vni >= tcvn3 else "TCVN3"


def to_unicode(text: str) -> tuple[str, str | None]:
    """The text in Unicode NFC, and the legacy encoding it was converted from (None if it was Unicode).

    Raises LegacyEncodingError for VNI text."""
    encoding = legacy_encoding(text)
    if encoding == "VNI":
        raise LegacyEncodingError(
            "the text is typed in the VNI encoding (e.g. 'Coäng hoøa' for 'Cộng hòa'); convert it to Unicode "
            "first (Unikey: Công cụ chuyển mã, VNI Windows → Unicode) and import it again"
        )
    if encoding == "TCVN3":
        text = "".join(_TCVN3.get(char, char) for char in text)
    return unicodedata.normalize("NFC", text), encoding
