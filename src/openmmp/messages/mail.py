"""Send Mail and Get Batch Email Status (api.md §4.7): e-mail to many addresses, and where each stands.

Send Mail is Broadcast Message to each address in turn: every address becomes a message of its own, with
the same checks, idempotency (`clientMessageId` per address) and webhooks; an address that is refused is
answered with its errors in its place while the others are sent. Its status in `EmailStatus` terms: the
relay has not taken it yet (PENDING), has taken it or reported it delivered (SUCCESS), or it failed at
send or bounced (FAIL).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.kit.crypto import Keyring
from openmmp.kit.ids import canonical_public_id
from openmmp.messages import repository
from openmmp.messages.schemas import (
    EmailStatusItem,
    EmailStatusRequest,
    EmailStatusResponse,
    MailRecipient,
    SendMail,
    SendMailResponse,
    StatusError,
)
from openmmp.messages.service import messages
from openmmp.models.message import MessageStatus
from openmmp.providers.base import Addressing
from openmmp.providers.registry import REGISTRY


class EmailStatus(IntEnum):
    """api.md §2."""

    PENDING = 1
    SUCCESS = 2
    FAIL = 3


def email_status(status: int) -> EmailStatus:
    if status == MessageStatus.PENDING:
        return EmailStatus.PENDING
    return EmailStatus.FAIL if status == MessageStatus.FAIL else EmailStatus.SUCCESS


_EMAIL_APPLICATIONS = [p.application.value for p in REGISTRY.providers if p.addressing == Addressing.EMAIL]
# What a refused address's errors name: Send Mail's fields, not Broadcast Message's.
_FIELD_NAMES = {"message.message": "text", "message": "text"}


def _item(request: SendMail, recipient: str | MailRecipient) -> dict[str, Any]:
    """One address's send as Broadcast Message's body."""
    own = recipient if isinstance(recipient, MailRecipient) else MailRecipient(email=recipient)
    item: dict[str, Any] = {
        "email": own.email,
        "subject": request.subject,
        "message": {"type": "text"} | ({"message": request.text} if request.text is not None else {}),
    }
    if request.html is not None:
        item["html"] = request.html
    params = (request.params or {}) | (own.params or {})
    if params:
        item["params"] = params
    if own.client_message_id is not None:
        item["clientMessageId"] = own.client_message_id
    if request.request_id is not None:
        item["requestId"] = request.request_id
    return item


async def send_mail(
    session: AsyncSession, keyring: Keyring, subject: Subject, request: SendMail
) -> SendMailResponse:
    items = [_item(request, recipient) for recipient in request.to]
    answers = await messages.broadcast_batch(
        session, keyring, subject, account_id=request.account_id, items=items, only=Addressing.EMAIL
    )
    results: list[dict[str, Any]] = []
    for item, answer in zip(items, answers, strict=True):
        if "errors" in answer:
            errors = [{**e, "name": _FIELD_NAMES.get(e["name"], e["name"])} for e in answer["errors"]]
            results.append({"email": item["email"], "errors": errors})
        else:
            results.append(
                {
                    "messageId": answer["messageId"],
                    "clientMessageId": answer["clientMessageId"],
                    "email": item["email"],
                    "status": int(EmailStatus.PENDING),
                    "cause": EmailStatus.PENDING.name,
                }
            )
    return SendMailResponse.model_validate({"requestId": request.request_id, "messages": results})


async def email_statuses(
    session: AsyncSession, subject: Subject, request: EmailStatusRequest
) -> EmailStatusResponse:
    by_client = request.message_ids is None
    wanted = request.client_message_ids if by_client else request.message_ids
    assert wanted is not None
    found = await repository.of_applications(
        session, subject, _EMAIL_APPLICATIONS, wanted, by_client_id=by_client
    )
    items = []
    seen = set()
    for message in found:
        status = email_status(message.status)
        seen.add(message.client_message_id if by_client else message.public_id)
        items.append(
            EmailStatusItem(
                message_id=message.public_id,
                client_message_id=message.client_message_id,
                email=message.recipient,
                status=status,
                cause=status.name,
                message_status=message.status,
                error=StatusError(code=message.error_code, message=message.error_message or "")
                if message.error_code
                else None,
                timestamp=message.updated_at,
            )
        )

    def key(wanted_id: str) -> str:
        return wanted_id if by_client else (canonical_public_id(wanted_id) or wanted_id)

    return EmailStatusResponse(items=items, not_found=[i for i in wanted if key(i) not in seen])
