"""The channels a message leaves by: email (SMTP), the iOffice exchange (edXML), a signed webhook, paper.

Each returns an Outcome instead of raising: sent, failed (worth retrying) or bounced (refused for good)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
import httpx

from services.notifications.domain import signature
from shared.documents.edxml import EdxmlError, read_status
from shared.documents.paper import DOCX_MEDIA_TYPE, file_stem
from shared.settings import Settings


@dataclass(frozen=True)
class Outcome:
    state: Literal["sent", "failed", "bounced"]
    error: str = ""
    external_status: str = ""


@dataclass(frozen=True)
class Attachment:
    name: str
    content: bytes


async def send_email(
    settings: Settings, to: str, subject: str, body: str, key: str, attachment: Attachment | None
) -> Outcome:
    """One email through the configured SMTP server; its Message-ID is the delivery's idempotency key."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{key}@thidua>"
    message.set_content(body)
    if attachment:
        maintype, subtype = DOCX_MEDIA_TYPE.split("/")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.name
        )
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls",
            timeout=settings.smtp_timeout_seconds,
        )
    except aiosmtplib.SMTPRecipientsRefused as error:
        return Outcome("bounced", f"the mail server refused {to}: {error.recipients[0].message}"[:500])
    except aiosmtplib.SMTPResponseException as error:
        state: Literal["failed", "bounced"] = "bounced" if error.code >= 500 else "failed"
        return Outcome(state, f"SMTP {error.code}: {error.message}"[:500])
    except (aiosmtplib.SMTPException, OSError) as error:
        return Outcome("failed", f"{type(error).__name__}: {error}"[:500])
    return Outcome("sent")


def post(url: str | None, body: bytes, headers: dict[str, str], far_end: str) -> httpx.Response | Outcome:
    """POST to another system: its answer, or a failed Outcome saying why (worth retrying)."""
    assert url, f"no address configured for {far_end}"
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        return Outcome("failed", f"{type(error).__name__}: {error}"[:500])
    if response.status_code >= 400:
        return Outcome("failed", f"{far_end} answered {response.status_code}: {response.text[:300]}")
    return response


def post_ioffice(settings: Settings, package: bytes, key: str) -> Outcome:
    """POST an edXML package to the exchange; a status message in the answer is kept."""
    headers = {"Content-Type": "application/xml", "Idempotency-Key": key}
    if settings.ioffice_token:
        headers["Authorization"] = f"Bearer {settings.ioffice_token.get_secret_value()}"
    response = post(settings.ioffice_url, package, headers, "the exchange")
    if isinstance(response, Outcome):
        return response
    external = ""
    if response.content.lstrip().startswith(b"<"):
        try:
            status = read_status(response.content)
            external = f"{status.code} {status.status}"
        except EdxmlError:
            external = ""
    return Outcome("sent", external_status=external)


def post_webhook(settings: Settings, payload: dict[str, Any], key: str) -> Outcome:
    """POST a message to another system, signed with HMAC-SHA256 of the body."""
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if settings.webhook_secret:
        headers["X-Thidua-Signature"] = signature(settings.webhook_secret.get_secret_value(), body)
    response = post(settings.webhook_url, body, headers, "the webhook")
    return response if isinstance(response, Outcome) else Outcome("sent")


@dataclass(frozen=True)
class PaperCopy:
    delivery_id: str
    unit_id: str
    unit_name: str


def write_paper_batch(
    folder: Path, subject: str, document: Attachment | None, copies: list[PaperCopy], letter: str
) -> Path:
    """A print batch for one dispatch: a copy of the document per unit and a cover list to post them with.
    Written under a temporary name and renamed, so a batch folder is always whole."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(exist_ok=True)
    with (partial / "danh-sach-gui.csv").open("w", encoding="utf-8-sig", newline="") as cover:
        writer = csv.writer(cover)
        writer.writerow(["STT", "Mã đơn vị", "Đơn vị nhận", "Văn bản", "Tệp", "Mã gửi"])
        for number, copy in enumerate(copies, start=1):
            name = f"{file_stem(copy.unit_id)}.docx" if document else f"{file_stem(copy.unit_id)}.txt"
            writer.writerow([number, copy.unit_id, copy.unit_name, subject, name, copy.delivery_id])
            if document:
                (partial / name).write_bytes(document.content)
            else:
                (partial / name).write_text(letter.replace("{unit_name}", copy.unit_name), encoding="utf-8")
    if folder.exists():
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()
    partial.rename(folder)
    return folder


def copies_in(cover: Path, leaving_out: set[str]) -> list[PaperCopy]:
    """The copies a batch's cover list already holds (but those about to be written again)."""
    with cover.open(encoding="utf-8-sig") as rows:
        return [
            PaperCopy(row["Mã gửi"], row["Mã đơn vị"], row["Đơn vị nhận"])
            for row in csv.DictReader(rows)
            if row["Mã gửi"] not in leaving_out
        ]
