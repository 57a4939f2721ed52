"""edXML (QCVN 102:2016/BTTTT, amended 2022): how iOffice systems exchange documents.

A package is an `edXMLEnvelope` whose `edXMLHeader/MessageHeader` carries the document's fields (From, To,
Code, PromulgationInfo, DocumentType, Subject, SignerInfo, ToPlaces, OtherInfo, ResponseFor, SteeringType,
DocumentId) and whose body carries the attached files, base64 in `AttachmentEncoded`. Processing feedback
comes back as a `Status` message. Both namespaces in use are read; packages are written in the current one.

Parsing is hardened: no DTD, no entities, no external references, and a size limit.
"""

from __future__ import annotations

import base64
import re
from datetime import date, datetime
from typing import Literal
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pydantic import BaseModel

from shared.documents.errors import DocumentError

NAMESPACE = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
OLD_NAMESPACE = "http://www.e-doc.vn/Schema/"
NAMESPACES = (NAMESPACE, OLD_NAMESPACE)
MAX_PACKAGE_BYTES = 20 * 1024 * 1024
# Status codes of the exchange (mã trạng thái xử lý).
STATUS_CODES = {
    "01": "received",
    "02": "refused",
    "03": "accepted",
    "04": "assigned",
    "05": "processing",
    "06": "done",
}
StatusName = Literal["received", "refused", "accepted", "assigned", "processing", "done"]


class EdxmlError(DocumentError):
    """A package thidua will not read: which part, and why."""


class Organ(BaseModel):
    organ_id: str
    organ_name: str = ""
    email: str = ""


class Attachment(BaseModel):
    name: str
    content_type: str
    content: bytes


class Package(BaseModel):
    """The fields of one edXML package that matter to a plan."""

    sender: Organ
    receivers: list[Organ] = []
    code_number: str
    code_notation: str
    place: str = ""
    promulgation_date: date
    document_type: str = "Kế hoạch"
    subject: str
    content: str = ""
    signer_competence: str = ""
    signer_position: str = ""
    signer_name: str = ""
    due_date: date | None = None
    to_places: list[str] = []
    priority: int = 0
    steering_type: int = 0
    response_for: str | None = None  # the DocumentId of the document this one answers or implements
    attachments: list[Attachment] = []

    @property
    def number(self) -> str:
        return f"{self.code_number}/{self.code_notation}"

    @property
    def document_id(self) -> str:
        """OrganId,yyyy/MM/dd,Number/Notation — how exchanges name a document."""
        return f"{self.sender.organ_id},{self.promulgation_date:%Y/%m/%d},{self.number}"


class Status(BaseModel):
    """A processing status for a document sent to a receiver."""

    document_id: str
    sender: Organ  # who reports the status: the receiver of the document
    code: str
    status: StatusName
    description: str = ""
    at: datetime | None = None


# ------------------------------------------------------------------ reading


def _root(data: bytes, max_bytes: int = MAX_PACKAGE_BYTES) -> ET.Element:
    if len(data) > max_bytes:
        raise EdxmlError("package", f"the package is {len(data)} bytes; at most {max_bytes} are accepted")
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as error:
        raise EdxmlError(
            "package", f"the package declares a DTD or entities, which are refused ({error})"
        ) from error
    except ET.ParseError as error:
        raise EdxmlError("package", f"the package is not well-formed XML: {error}") from error
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if namespace not in NAMESPACES:
        raise EdxmlError("package", f"unknown edXML namespace {namespace or '(none)'}; expected {NAMESPACE}")
    return root


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _find(parent: ET.Element | None, *path: str) -> ET.Element | None:
    node = parent
    for name in path:
        if node is None:
            return None
        node = next((child for child in node if _local(child) == name), None)
    return node


def _all(parent: ET.Element | None, name: str) -> list[ET.Element]:
    return [child for child in parent if _local(child) == name] if parent is not None else []


def _text(parent: ET.Element | None, *path: str) -> str:
    node = _find(parent, *path)
    return (node.text or "").strip() if node is not None else ""


def parse_edxml_date(value: str, field: str) -> date:
    """edXML dates come as yyyy/MM/dd or dd/MM/yyyy (and sometimes with dashes)."""
    value = value.strip()
    for pattern in ("%Y/%m/%d", "%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y"):
        try:
            return datetime.strptime(value, pattern).date()
        except ValueError:
            continue
    raise EdxmlError(field, f"{field} {value!r} is not a date (yyyy/MM/dd or dd/MM/yyyy)")


def _organ(node: ET.Element | None) -> Organ:
    return Organ(
        organ_id=_text(node, "OrganId"), organ_name=_text(node, "OrganName"), email=_text(node, "Email")
    )


def read_package(data: bytes, max_bytes: int = MAX_PACKAGE_BYTES) -> Package:
    """The plan-relevant fields and attachments of an edXML package."""
    root = _root(data, max_bytes)
    envelope = root if _local(root) == "edXMLEnvelope" else _find(root, "edXMLEnvelope")
    header = _find(envelope, "edXMLHeader", "MessageHeader")
    if header is None:
        raise EdxmlError("MessageHeader", "the package has no edXMLHeader/MessageHeader")
    sender = _organ(_find(header, "From"))
    if not sender.organ_id:
        raise EdxmlError("From.OrganId", "the package does not say which organ sent it (From/OrganId)")
    number, notation = _text(header, "Code", "CodeNumber"), _text(header, "Code", "CodeNotation")
    if not number or not notation:
        raise EdxmlError("Code", "the package has no document number (Code/CodeNumber and Code/CodeNotation)")
    promulgated = _text(header, "PromulgationInfo", "PromulgationDate")
    if not promulgated:
        raise EdxmlError("PromulgationInfo.PromulgationDate", "the package has no promulgation date")
    due = _text(header, "DueDate")
    attachments = []
    body = _find(envelope, "edXMLBody") if envelope is not None else None
    encoded = _find(body, "AttachmentEncoded")
    for node in _all(encoded, "Attachment"):
        name = _text(node, "AttachmentName") or _text(node, "Description") or "attachment"
        payload = re.sub(r"\s+", "", _text(node, "ContentTransferEncoded"))
        try:
            content = base64.b64decode(payload, validate=True)
        except ValueError as error:
            raise EdxmlError("Attachment", f"attachment {name!r} is not valid base64") from error
        attachments.append(
            Attachment(
                name=name,
                content_type=_text(node, "ContentType") or "application/octet-stream",
                content=content,
            )
        )
    return Package(
        sender=sender,
        receivers=[_organ(node) for node in _all(header, "To")],
        code_number=number,
        code_notation=notation,
        place=_text(header, "PromulgationInfo", "Place"),
        promulgation_date=parse_edxml_date(promulgated, "PromulgationInfo.PromulgationDate"),
        document_type=_text(header, "DocumentType", "TypeName") or "Kế hoạch",
        subject=_text(header, "Subject"),
        content=_text(header, "Content"),
        signer_competence=_text(header, "SignerInfo", "Competence"),
        signer_position=_text(header, "SignerInfo", "Position"),
        signer_name=_text(header, "SignerInfo", "FullName"),
        due_date=parse_edxml_date(due, "DueDate") if due else None,
        to_places=[(node.text or "").strip() for node in _all(_find(header, "ToPlaces"), "Place")],
        priority=int(_text(header, "OtherInfo", "Priority") or 0),
        steering_type=int(_text(header, "SteeringType") or 0),
        response_for=_text(header, "ResponseFor", "DocumentId") or None,
        attachments=attachments,
    )


def read_status(data: bytes, max_bytes: int = MAX_PACKAGE_BYTES) -> Status:
    """A status message: which document, who reports, and the state it is in."""
    root = _root(data, max_bytes)
    status = root if _local(root) == "Status" else _find(root, "Status")
    if status is None:
        raise EdxmlError("Status", "this is not an edXML status message (no Status element)")
    code = _text(status, "StatusCode")
    if code not in STATUS_CODES:
        raise EdxmlError("StatusCode", f"status code {code!r} is not one of {', '.join(STATUS_CODES)}")
    document_id = _text(status, "ResponseFor", "DocumentId")
    if not document_id:
        raise EdxmlError("ResponseFor.DocumentId", "the status does not say which document it is about")
    stamp = _text(status, "Timestamp")
    return Status(
        document_id=document_id,
        sender=_organ(_find(status, "From")),
        code=code,
        status=STATUS_CODES[code],  # type: ignore[arg-type]
        description=_text(status, "Description"),
        at=datetime.fromisoformat(stamp) if stamp else None,
    )


# ------------------------------------------------------------------ writing


def _add(parent: ET.Element, name: str, text: str | None = None) -> ET.Element:
    node = ET.SubElement(parent, f"{{{NAMESPACE}}}{name}")
    if text is not None:
        node.text = text
    return node


def _add_organ(parent: ET.Element, name: str, organ: Organ) -> None:
    node = _add(parent, name)
    _add(node, "OrganId", organ.organ_id)
    _add(node, "OrganName", organ.organ_name)
    _add(node, "Email", organ.email)


def write_package(package: Package) -> bytes:
    """The package as edXML, in the current namespace."""
    ET.register_namespace("edXML", NAMESPACE)
    envelope = ET.Element(f"{{{NAMESPACE}}}edXMLEnvelope")
    header = _add(_add(envelope, "edXMLHeader"), "MessageHeader")
    _add_organ(header, "From", package.sender)
    for receiver in package.receivers:
        _add_organ(header, "To", receiver)
    code = _add(header, "Code")
    _add(code, "CodeNumber", package.code_number)
    _add(code, "CodeNotation", package.code_notation)
    promulgation = _add(header, "PromulgationInfo")
    _add(promulgation, "Place", package.place)
    _add(promulgation, "PromulgationDate", f"{package.promulgation_date:%Y/%m/%d}")
    kind = _add(header, "DocumentType")
    _add(kind, "Type", "1")
    _add(kind, "TypeName", package.document_type)
    _add(header, "Subject", package.subject)
    _add(header, "Content", package.content)
    signer = _add(header, "SignerInfo")
    _add(signer, "Competence", package.signer_competence)
    _add(signer, "Position", package.signer_position)
    _add(signer, "FullName", package.signer_name)
    if package.due_date:
        _add(header, "DueDate", f"{package.due_date:%Y/%m/%d}")
    places = _add(header, "ToPlaces")
    for place in package.to_places:
        _add(places, "Place", place)
    other = _add(header, "OtherInfo")
    _add(other, "Priority", str(package.priority))
    _add(other, "PageAmount", "1")
    if package.response_for:
        _add(_add(header, "ResponseFor"), "DocumentId", package.response_for)
    _add(header, "SteeringType", str(package.steering_type))
    _add(header, "DocumentId", package.document_id)
    trace = _add(_add(envelope.find(f"{{{NAMESPACE}}}edXMLHeader"), "TraceHeaderList"), "TraceHeader")  # type: ignore[arg-type]
    _add(trace, "OrganId", package.sender.organ_id)
    _add(trace, "Timestamp", f"{package.promulgation_date:%Y/%m/%d}")
    encoded = _add(_add(envelope, "edXMLBody"), "AttachmentEncoded")
    for attachment in package.attachments:
        node = _add(encoded, "Attachment")
        _add(node, "ContentId", attachment.name)
        _add(node, "ContentType", attachment.content_type)
        _add(node, "AttachmentName", attachment.name)
        _add(node, "ContentTransferEncoded", base64.b64encode(attachment.content).decode("ascii"))
    ET.indent(envelope)
    return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)


def write_status(status: Status) -> bytes:
    ET.register_namespace("edXML", NAMESPACE)
    root = ET.Element(f"{{{NAMESPACE}}}Status")
    _add(_add(root, "ResponseFor"), "DocumentId", status.document_id)
    _add_organ(root, "From", status.sender)
    _add(root, "StatusCode", status.code)
    _add(root, "Description", status.description)
    if status.at:
        _add(root, "Timestamp", status.at.isoformat())
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
