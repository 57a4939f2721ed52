"""Plan documents in and out: text, DOCX, PDF and edXML packages read into what a plan says; plans written
back as DOCX and edXML."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel

from shared.documents.edxml import MAX_PACKAGE_BYTES, Attachment, EdxmlError, Organ, Package, read_package
from shared.documents.encoding import decode
from shared.documents.errors import DocumentError
from shared.documents.paper import (
    DOCX_MEDIA_TYPE,
    PlanDocument,
    docx_name,
    docx_text,
    pdf_text,
    render_plan_docx,
)
from shared.documents.plan_text import ParsedPlan, PlanReference, SignerText, Warning_, parse_plan_text

DocumentKind = Literal["text", "docx", "pdf", "edxml"]
AUTHORITY_PREFIXES = ("TM.", "KT.", "Q.", "TL.", "TUQ.")


class ReadDocument(BaseModel):
    kind: DocumentKind
    media_type: str
    plan: ParsedPlan
    package: Package | None = None


def document_kind(data: bytes, filename: str = "") -> DocumentKind:
    """What a file is, by its content first and its name second."""
    name = filename.lower()
    if data.startswith(b"%PDF"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return "docx"
    head = data[:2000].lstrip(b"\xef\xbb\xbf \t\r\n")
    if (head.startswith(b"<") and b"edXML" in head) or name.endswith(".xml"):
        return "edxml"
    return "text"


def attachment_text(data: bytes, filename: str = "") -> str:
    """The text of a file; a DOCX or PDF that cannot be opened is a DocumentError saying so."""
    kind = document_kind(data, filename)
    try:
        if kind == "docx":
            return docx_text(data)
        if kind == "pdf":
            return pdf_text(data)
    except Exception as error:  # the libraries raise many kinds for a damaged file
        raise DocumentError(
            "document", f"the file is not a readable {kind.upper()}: {error}"[:300]
        ) from error
    return decode(data)


def plan_from_package(package: Package) -> ParsedPlan:
    """A plan from an edXML package: the header's fields, and what the attached plan says besides.

    Where the attachment disagrees with the header, the header wins and the difference is a warning."""
    documents = [a for a in package.attachments if not a.content_type.startswith("image/")]
    if documents:
        plan = parse_plan_text(attachment_text(documents[0].content, documents[0].name))
    else:
        plan = parse_plan_text(package.content or package.subject)
        plan.warnings.append(
            Warning_(
                code="no_attachment", message="the package carries no document; only its header was read"
            )
        )
    header = {
        "number": package.number,
        "issued_on": package.promulgation_date,
        "place": package.place or None,
        "title": package.subject or None,
    }
    for field, value in header.items():
        found = getattr(plan, field)
        if value and found and found != value:
            plan.warnings.append(
                Warning_(
                    code="header_mismatch",
                    message=f"the package says {field} is {value}, the attached document says {found}",
                    text=str(found),
                )
            )
        if value:
            setattr(plan, field, value)
    plan.warnings = [
        w for w in plan.warnings if not (w.code == "missing_field" and getattr(plan, w.text, None))
    ]
    plan.document_type = "KH" if package.code_notation.upper().startswith("KH") else plan.document_type
    plan.issuer = plan.issuer or package.sender.organ_name or None
    if package.signer_name:
        competence = package.signer_competence.split()
        authority = competence[0] if competence and competence[0] in AUTHORITY_PREFIXES else None
        plan.signer = SignerText(
            authority=authority,  # type: ignore[arg-type]
            on_behalf_of=" ".join(competence[1:]) if authority and len(competence) > 1 else None,
            position=package.signer_position or (plan.signer.position if plan.signer else ""),
            name=package.signer_name,
        )
    if package.response_for and not plan.implements:
        organ, _, number = (
            package.response_for.split(",", 2) if package.response_for.count(",") >= 2 else ("", "", "")
        )
        if number:
            plan.implements.append(PlanReference(document_type="Kế hoạch", number=number, issuer=organ))
    return plan


def read_plan_document(data: bytes, filename: str = "", max_bytes: int = MAX_PACKAGE_BYTES) -> ReadDocument:
    """Read a plan from a file as it arrives: text, DOCX, the text layer of a PDF, or an edXML package."""
    if len(data) > max_bytes:
        raise EdxmlError("document", f"the document is {len(data)} bytes; at most {max_bytes} are accepted")
    kind = document_kind(data, filename)
    if kind == "edxml":
        package = read_package(data, max_bytes)
        return ReadDocument(
            kind=kind, media_type="application/xml", plan=plan_from_package(package), package=package
        )
    media_type = {"docx": DOCX_MEDIA_TYPE, "pdf": "application/pdf"}.get(kind, "text/plain; charset=utf-8")
    return ReadDocument(
        kind=kind, media_type=media_type, plan=parse_plan_text(attachment_text(data, filename))
    )


def document_id_of(issuer_unit_id: str, issued_on: date, number: str) -> str:
    """How exchanges name a document: OrganId,yyyy/MM/dd,Number/Notation (thidua's unit ids as organ ids)."""
    return f"{issuer_unit_id},{issued_on:%Y/%m/%d},{number}"


def plan_package(
    document: PlanDocument, sender: Organ, receiver: Organ, parent_document_id: str | None
) -> Package:
    """The edXML package of an issued plan for one recipient: the header's fields and the plan as DOCX."""
    plan = document.plan
    number, _, notation = plan.number.partition("/")
    signer = plan.signer
    dues = [phase.report_due for phase in plan.phases if phase.report_due]
    return Package(
        sender=sender,
        receivers=[receiver],
        code_number=number.strip(),
        code_notation=notation.strip(),
        place=plan.place,
        promulgation_date=plan.issued_on,
        subject=plan.title,
        content=plan.title,
        signer_competence=f"{signer.authority} Ban Thường vụ" if signer and signer.authority else "",
        signer_position=signer.position if signer else "",
        signer_name=signer.name if signer else "",
        due_date=min(dues) if dues else None,
        to_places=[r.name for r in plan.recipients if r.purpose != "archive"],
        response_for=parent_document_id,
        attachments=[
            Attachment(
                name=docx_name(plan.number),
                content_type=DOCX_MEDIA_TYPE,
                content=render_plan_docx(document),
            )
        ],
    )
