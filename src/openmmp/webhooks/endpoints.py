from typing import Annotated

import orjson
from fastapi import APIRouter, Query

from openmmp.api_keys.auth import CompanyKey
from openmmp.channels.service import channels
from openmmp.errors import responses
from openmmp.kit.db import SessionDep
from openmmp.kit.schemas import AccountId, Page, PageNumber, PageSize, WebhookId
from openmmp.models import WebhookAttempt, WebhookDelivery
from openmmp.models.webhook import DeliveryState
from openmmp.webhooks.schemas import (
    DeliveryStateName,
    ReplayWebhooksRequest,
    ReplayWebhooksResponse,
    WebhookAttemptResponse,
    WebhookDeliveryDetail,
    WebhookDeliveryResponse,
)
from openmmp.webhooks.service import webhooks

router = APIRouter(prefix="/channel/{accountId}/webhook", tags=["Webhooks"])


def _state(name: DeliveryStateName | None) -> DeliveryState | None:
    return None if name is None else DeliveryState[name.value]


def _read(delivery: WebhookDelivery) -> WebhookDeliveryResponse:
    state = DeliveryState(delivery.state)
    return WebhookDeliveryResponse(
        webhook_id=delivery.public_id,
        event_type=delivery.event_type,
        state=DeliveryStateName(state.name),
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_date=delivery.created_at,
        delivered_date=delivery.delivered_at,
        next_attempt_date=delivery.next_attempt_at if state == DeliveryState.PENDING else None,
    )


def _attempt(attempt: WebhookAttempt) -> WebhookAttemptResponse:
    return WebhookAttemptResponse(
        attempted_date=attempt.attempted_at,
        url=attempt.url,
        status_code=attempt.status_code,
        latency_ms=attempt.latency_ms,
        response_excerpt=attempt.response_excerpt,
        error=attempt.error,
    )


@router.get(
    "/deliveries",
    summary="List the channel's webhook deliveries",
    description="Newest first. Filter with `state` (PENDING, DELIVERED, HELD).",
    response_model=Page[WebhookDeliveryResponse],
    responses=responses(400, 401, 403, 404),
)
async def list_deliveries(
    account_id: AccountId,
    subject: CompanyKey,
    session: SessionDep,
    state: Annotated[DeliveryStateName | None, Query()] = None,
    page: PageNumber = 1,
    size: PageSize = 20,
) -> Page[WebhookDeliveryResponse]:
    channel = await channels.get(session, subject, public_id=account_id)
    total, items = await webhooks.list(
        session, subject, channel=channel, state=_state(state), page=page, size=size
    )
    return Page[WebhookDeliveryResponse](total=total, page=page, size=size, items=[_read(d) for d in items])


@router.get(
    "/deliveries/{webhookId}",
    summary="Get a webhook delivery with its body and attempt log",
    response_model=WebhookDeliveryDetail,
    responses=responses(401, 403, 404),
)
async def get_delivery(
    account_id: AccountId, webhook_id: WebhookId, subject: CompanyKey, session: SessionDep
) -> WebhookDeliveryDetail:
    channel = await channels.get(session, subject, public_id=account_id)
    detail = await webhooks.get(session, subject, channel=channel, webhook_id=webhook_id)
    return WebhookDeliveryDetail(
        **_read(detail.delivery).model_dump(),
        body=orjson.loads(detail.delivery.body),
        attempt_log=[_attempt(a) for a in detail.attempts],
    )


@router.post(
    "/deliveries/{webhookId}/replay",
    summary="Send a webhook again",
    description=(
        "Queues the delivery to be sent again now, with the same `webhook-id`, even if it was delivered. "
        "While the endpoint is FAILED it is HELD and goes out when the endpoint is re-activated."
    ),
    response_model=WebhookDeliveryResponse,
    responses=responses(401, 403, 404),
)
async def replay_delivery(
    account_id: AccountId, webhook_id: WebhookId, subject: CompanyKey, session: SessionDep
) -> WebhookDeliveryResponse:
    channel = await channels.get(session, subject, public_id=account_id)
    return _read(await webhooks.replay(session, subject, channel=channel, webhook_id=webhook_id))


@router.post(
    "/replay",
    summary="Send many webhooks again",
    description=(
        "Queues again every delivery of the channel created between `fromDate` and `toDate` (epoch ms, "
        "inclusive, both optional), optionally only those in `state`. Returns how many."
    ),
    response_model=ReplayWebhooksResponse,
    responses=responses(400, 401, 403, 404, 413),
)
async def replay_deliveries(
    account_id: AccountId, body: ReplayWebhooksRequest, subject: CompanyKey, session: SessionDep
) -> ReplayWebhooksResponse:
    channel = await channels.get(session, subject, public_id=account_id)
    count = await webhooks.replay_many(
        session,
        subject,
        channel=channel,
        from_date=body.from_date,
        to_date=body.to_date,
        state=_state(body.state),
    )
    return ReplayWebhooksResponse(count=count)
