"""Viber Business Messages on the provider contract (providers.md §2).

Addressed by phone from a numeric `serviceId` that the operator's aggregator assigns; `seq` carries the
message id, so a repeated send collapses upstream. Callbacks are signed with the operator's partner-level
secret (`OPENMMP_PROVIDERS__VIBER_CALLBACK_SECRET`; the simulator's published default in sandbox mode).
A real partner registers its callback URL with the aggregator out of band; in sandbox mode the set-up
registers each service's callback URL with the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from openmmp.kit.http import HttpClient
from openmmp.kit.time import now_ms
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    CallbackRequest,
    Credentials,
    Link,
    Outgoing,
    Provider,
    ProviderContext,
    RateLimit,
    SandboxUser,
    SandboxWritten,
    SendOk,
    SendUnit,
    one_unit_each,
)
from openmmp.providers.simulation import sandbox_control, sandbox_inbound
from openmmp.providers.viber import callbacks
from openmmp.providers.viber.client import TTL_MAX_S, TTL_MIN_S, ViberClient, to_viber_bm_message

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig


class ViberCredentials(Credentials):
    # The aggregator assigns service ids to the operator's customers: a company cannot pick one itself.
    identity_fields = ("service_id",)
    operator_assigned = True

    service_id: int = Field(ge=1, description="Viber Business Messages service id")
    label: Literal["transaction", "promotion"] | None = None


class ViberOptions(BaseModel):
    callback_secret: str = Field(
        default="",
        description="Shared secret signing Viber Business Messages callbacks (agreed with the aggregator).",
    )


class ViberProvider(Provider):
    name = "viber"
    application = Application.VIBER
    title = "Viber Business Messages"
    message_types = frozenset({"text", "rich_card", "picture", "video", "file"})
    rate_limit = RateLimit(requests=1000, window_seconds=1.0, per="service")
    idempotent = True
    addressing = Addressing.PHONE
    credentials_model = ViberCredentials
    options_model = ViberOptions
    callback_auth = (
        "`X-Viber-Content-Signature`: hex HMAC-SHA256 of the raw body, keyed by the operator's Viber "
        "callback secret."
    )
    sandbox_credentials = {"serviceId": 1001, "label": "transaction"}
    default_base_url = "https://services.viber.com"

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        # Any expiry is fine: OpenMMP enforces it itself and passes Viber a TTL clamped to its 30 s … 14 d.
        to_viber_bm_message(content, label=credentials.get("label"))

    def needs_setup(self, *, sandbox: bool) -> bool:
        return sandbox

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        service_id = int(credentials["serviceId"])
        await sandbox_control(
            ctx.http,
            f"{ctx.base_url}/_sandbox/services/{service_id}",
            {"callbackUrl": callback_url},
            simulator=self.title,
        )

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        client = ViberClient(ctx.http, ctx.base_url)
        service_id = int(credentials["serviceId"])
        label = credentials.get("label")

        async def send(message: Outgoing) -> SendOk:
            ttl = None
            if message.expire_at_ms is not None:
                ttl = max(TTL_MIN_S, min(TTL_MAX_S, (message.expire_at_ms - now_ms()) // 1000))
            return await client.send_message(
                service_id=service_id,
                dest=message.recipient,
                seq=message.key,  # the idempotency key: a retry repeats it, upstream collapses it
                label=label,
                message=message.content,
                ttl=ttl,
            )

        return one_unit_each(outgoing, send)

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        secret = ctx.secret("callback_secret", callbacks.SANDBOX_CALLBACK_SECRET)
        signature = request.header(callbacks.SIGNATURE_HEADER)
        return bool(secret) and callbacks.verify_signature(request.body, signature, secret)

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return [callbacks.parse_callback(body)]

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.viber.simulator import create_viber_simulator

        return create_viber_simulator(config, http)

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        if not user.phone:
            raise ValueError("phone: required: a Viber Business Messages user writes from a phone number")
        body = {"serviceId": int(credentials["serviceId"]), "phone": user.phone, "text": user.text}
        answer = await sandbox_inbound(ctx, body, simulator=self.title, registered="callbackUrl")
        return SandboxWritten(user_id=user.phone, message_token=str(answer.get("messageToken", "")))
