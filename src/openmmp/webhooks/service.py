"""Rules for outbound webhooks: what is stored to be sent, what a tenant may see and replay.

Deliveries are written by other domains inside their own transaction (`enqueue`), so an event exists
exactly when the change that caused it is committed (the outbox pattern); `tasks.WebhookDeliverer`
sends them. Services never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.errors import Invalid, NotFound
from openmmp.kit.ids import new_public_id
from openmmp.kit.time import now_ms
from openmmp.models import Channel, WebhookAttempt, WebhookDelivery
from openmmp.models.channel import WebhookStatus
from openmmp.models.webhook import DeliveryState
from openmmp.queue.notify import WEBHOOKS, notify
from openmmp.webhooks import repository


class WebhookNotFound(NotFound):
    default_name = "webhookId"


@dataclass(frozen=True)
class DeliveryDetail:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt]


def _arrival_state(channel: Channel) -> DeliveryState:
    # Anything but an ACTIVATED endpoint (FAILED, or BLOCKED by the operator) keeps events, not sends them.
    return DeliveryState.PENDING if channel.webhook_status == WebhookStatus.ACTIVATED else DeliveryState.HELD


class WebhookService:
    async def enqueue(
        self,
        session: AsyncSession,
        *,
        channel: Channel,
        event_type: int,
        body: Mapping[str, Any],
        ordering_key: str | None,
    ) -> WebhookDelivery | None:
        """Store one event for the channel's webhook URL, in the caller's transaction (never commits).

        `body` is serialised once (compact JSON); those bytes are sent, and signed, on every attempt.
        Deliveries sharing an `ordering_key` (use the message's public id) go out strictly in the order
        they were enqueued, each only after the previous one succeeded. Returns None and stores nothing
        when the channel has no webhook URL. When the endpoint is FAILED the event is stored HELD.
        Costs one INSERT at the caller's next flush and no SELECT (`channel` must be the loaded row);
        it awaits nothing itself, it is a coroutine so it may later. After the commit, wake the deliverer
        (`WebhookDeliverer.wake()`) for prompt delivery.
        """
        row = self.delivery_row(channel=channel, event_type=event_type, body=body, ordering_key=ordering_key)
        if row is None:
            return None
        delivery = WebhookDelivery(**row)
        session.add(delivery)
        return delivery

    async def enqueue_state(
        self,
        session: AsyncSession,
        *,
        channel: Channel,
        event_type: int,
        kind: str,
        public_id: str,
        status: int,
        cause: str | None,
        timestamp_ms: int | None = None,
    ) -> None:
        """A `type: 3` (`kind` "template") or `type: 4` (`kind` "channel") event, api.md §5.3's body: the
        object's new status, in the order of its changes, and the deliverer told at the commit."""
        await notify(session, WEBHOOKS)
        await self.enqueue(
            session,
            channel=channel,
            event_type=event_type,
            body={
                "type": event_type,
                "timestamp": timestamp_ms if timestamp_ms is not None else now_ms(),
                "publicId": channel.public_id,
                "applicationId": channel.application_id,
                kind: {"publicId": public_id, "status": status, "cause": cause},
            },
            ordering_key=f"{kind}:{public_id}",
        )

    def delivery_row(
        self, *, channel: Channel, event_type: int, body: Mapping[str, Any], ordering_key: str | None
    ) -> dict[str, Any] | None:
        """`enqueue`'s row as a dict, for callers that insert many at once (`insert_deliveries`); None
        when the channel has no webhook URL."""
        if not channel.webhook_url:
            return None
        now = now_ms()
        return {
            "public_id": new_public_id(),
            "company_id": channel.company_id,
            "channel_id": channel.id,
            "ordering_key": ordering_key,
            "event_type": event_type,
            "body": orjson.dumps(body).decode(),
            "state": int(_arrival_state(channel)),
            "attempts": 0,
            "next_attempt_at": now,
            "lease_until": 0,
            "created_at": now,
        }

    async def insert_deliveries(self, session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        """Store `delivery_row`s in one statement, in list order (their ids keep each ordering key's
        order), without the ORM: a round of sends records hundreds."""
        await repository.insert_deliveries(session, rows)

    async def release_held(self, session: AsyncSession, *, channel: Channel) -> int:
        """The endpoint is (re-)activated: its HELD deliveries become due now; the failure streak ends.

        Call it when the channel's webhook status becomes ACTIVATED (the set-webhook endpoint).
        """
        channel.webhook_failing_since = None
        return await repository.release_held(session, channel_id=channel.id, now=now_ms())

    async def list(
        self,
        session: AsyncSession,
        subject: Subject,
        *,
        channel: Channel,
        state: DeliveryState | None,
        page: int,
        size: int,
    ) -> tuple[int, list[WebhookDelivery]]:
        """The channel's deliveries, newest first. `channel` must come from the channels service."""
        return await repository.page(
            session, subject, channel_id=channel.id, state=state, offset=(page - 1) * size, limit=size
        )

    async def get(
        self, session: AsyncSession, subject: Subject, *, channel: Channel, webhook_id: str
    ) -> DeliveryDetail:
        delivery = await repository.get(session, subject, channel_id=channel.id, public_id=webhook_id)
        if delivery is None:
            raise WebhookNotFound("No such webhook delivery")
        return DeliveryDetail(delivery, await repository.attempts_of(session, delivery))

    async def replay(
        self, session: AsyncSession, subject: Subject, *, channel: Channel, webhook_id: str
    ) -> WebhookDelivery:
        """Send one delivery again now, with the same webhook-id, whatever its state.

        It takes its place in its ordering key's line again, and starts a fresh retry cycle. While the
        endpoint is not ACTIVATED it is HELD instead, to go out when the endpoint is re-activated.
        """
        delivery = await repository.get(session, subject, channel_id=channel.id, public_id=webhook_id)
        if delivery is None:
            raise WebhookNotFound("No such webhook delivery")
        await repository.requeue(
            session,
            subject,
            channel_id=channel.id,
            delivery_id=delivery.id,
            state=_arrival_state(channel),
            now=now_ms(),
        )
        await session.refresh(delivery)
        return delivery

    async def replay_many(
        self,
        session: AsyncSession,
        subject: Subject,
        *,
        channel: Channel,
        from_date: int | None,
        to_date: int | None,
        state: DeliveryState | None,
    ) -> int:
        """Send again every delivery of the channel created in [from_date, to_date] (epoch ms, both
        optional and inclusive), optionally only those in `state`. Returns how many were re-queued.
        """
        if from_date is not None and to_date is not None and to_date < from_date:
            raise Invalid("must not be before fromDate", name="toDate")
        return await repository.requeue(
            session,
            subject,
            channel_id=channel.id,
            state=_arrival_state(channel),
            now=now_ms(),
            created_from=from_date,
            created_to=to_date,
            only_state=state,
        )


webhooks = WebhookService()

enqueue = webhooks.enqueue
"""`await service.enqueue(session, *, channel, event_type, body, ordering_key)`: WebhookService.enqueue."""
delivery_row = webhooks.delivery_row
insert_deliveries = webhooks.insert_deliveries
