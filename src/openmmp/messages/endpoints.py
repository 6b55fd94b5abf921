from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from openmmp.api_keys.auth import CompanyKey
from openmmp.deps import KeyringDep
from openmmp.errors import responses
from openmmp.kit.db import SessionDep, after_commit
from openmmp.kit.schemas import AccountId, MessageId
from openmmp.messages.mail import email_statuses, send_mail
from openmmp.messages.schemas import (
    BroadcastBatchRequest,
    BroadcastBatchResponse,
    BroadcastResponseMessage,
    EmailStatusRequest,
    EmailStatusResponse,
    ResponseStatusMessage,
    SendConversationMessage,
    SendMail,
    SendMailResponse,
    SendMessageBroadcast,
)
from openmmp.messages.service import messages

channel_router = APIRouter(prefix="/channel", tags=["Message"])
message_router = APIRouter(prefix="/message", tags=["Message"])
email_router = APIRouter(prefix="/email", tags=["E-mail"])

SEND_ERRORS = responses(400, 401, 403, 404, 409, 413, 429)


@channel_router.post(
    "/{accountId}/broadcast",
    summary="Broadcast Message",
    description=(
        "Queue one message to one phone number (OA channels) or conversation (BOT channels). The message is "
        "durable once this answers. Idempotent by `clientMessageId`: the same body again returns the "
        "original "
        "answer and sends nothing; another body with the same id is a 409."
    ),
    response_model=BroadcastResponseMessage,
    responses=SEND_ERRORS,
)
async def broadcast(
    account_id: AccountId,
    body: SendMessageBroadcast,
    request: Request,
    subject: CompanyKey,
    keyring: KeyringDep,
) -> BroadcastResponseMessage:
    state = request.app.state
    return await messages.send(state.db, state.sends, keyring, subject, account_id=account_id, request=body)


@channel_router.post(
    "/{accountId}/broadcast/batch",
    summary="Broadcast up to 1,000 messages in one call",
    description=(
        "Each item is a SendMessageBroadcast, checked on its own: the answer lists, in input order, the "
        "BroadcastResponseMessage of each accepted item or `{errors}` for a refused one."
    ),
    response_model=BroadcastBatchResponse,
    responses=SEND_ERRORS,
)
async def broadcast_batch(
    account_id: AccountId,
    body: BroadcastBatchRequest,
    request: Request,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
) -> Response:
    results = await messages.broadcast_batch(
        session, keyring, subject, account_id=account_id, items=body.messages
    )
    after_commit(request, request.app.state.wake_workers)
    # Written as built: validating and serialising 1,000 answers through the response model cost more
    # than storing them. The model above still documents the answer.
    return Response(orjson.dumps({"messages": results}), media_type="application/json")


@channel_router.post(
    "/{accountId}/conversation",
    summary="Send Conversation Message",
    description="Reply to an end user of a BOT channel: `to` is the `from` of their inbound webhook.",
    response_model=BroadcastResponseMessage,
    responses=SEND_ERRORS,
)
async def send_conversation_message(
    account_id: AccountId,
    body: SendConversationMessage,
    request: Request,
    subject: CompanyKey,
    keyring: KeyringDep,
) -> BroadcastResponseMessage:
    state = request.app.state
    return await messages.send(state.db, state.sends, keyring, subject, account_id=account_id, request=body)


@message_router.get(
    "/status",
    summary="Get Message Status by clientMessageId",
    response_model=ResponseStatusMessage,
    responses=responses(400, 401, 403, 404),
)
async def get_status_by_client_id(
    subject: CompanyKey,
    session: SessionDep,
    client_message_id: Annotated[str, Query(alias="clientMessageId", min_length=1, max_length=100)],
) -> ResponseStatusMessage:
    return await messages.status(session, subject, message_id=None, client_message_id=client_message_id)


@message_router.get(
    "/{messageId}/status",
    summary="Get Message Status",
    response_model=ResponseStatusMessage,
    responses=responses(401, 403, 404),
)
async def get_status(
    message_id: MessageId, subject: CompanyKey, session: SessionDep
) -> ResponseStatusMessage:
    return await messages.status(session, subject, message_id=message_id, client_message_id=None)


@email_router.post(
    "/send",
    summary="Send Mail",
    description=(
        "One e-mail (`subject`, `text` and/or `html`, `{{name}}` placeholders) to up to 1,000 addresses of "
        "an EMAIL channel. Each address is a message of its own, as Broadcast Message would make it: its "
        "own `messageId`, idempotent by its own `clientMessageId`, webhooks per status change. The answer "
        "lists, in the order of `to`, each accepted address (EmailStatus 1 PENDING) or a refused one's "
        "`errors`."
    ),
    response_model=SendMailResponse,
    responses=SEND_ERRORS,
)
async def send_mail_endpoint(
    body: SendMail, request: Request, subject: CompanyKey, session: SessionDep, keyring: KeyringDep
) -> SendMailResponse:
    result = await send_mail(session, keyring, subject, body)
    after_commit(request, request.app.state.wake_workers)
    return result


@email_router.post(
    "/status",
    summary="Get Batch Email Status",
    description=(
        "Where up to 1,000 e-mails stand, by `messageIds` or `clientMessageIds`, in EmailStatus terms: 1 "
        "PENDING (not yet taken by the relay), 2 SUCCESS (taken, or reported delivered), 3 FAIL (refused "
        "or bounced: `error.code` `SMTP_<code>`). Ids that name no e-mail of the company are listed in "
        "`notFound`."
    ),
    response_model=EmailStatusResponse,
    responses=responses(400, 401, 403),
)
async def email_status_endpoint(
    body: EmailStatusRequest, subject: CompanyKey, session: SessionDep
) -> EmailStatusResponse:
    return await email_statuses(session, subject, body)
