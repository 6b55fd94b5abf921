"""Apple Messages for Business on the provider contract, with OpenMMP as the business's MSP.

A channel is one business (`businessId`, the Messages for Business account id Apple issued) reached through
an MSP account (`mspId`, and the MSP `secret`, base64, that signs the JWTs both ways: `auth`). The user
always starts the conversation; the business answers them by their opaque id (`urn:mbid:...`), which is
the conversation's `from`. One request per message (`client`); Apple collapses a repeated message `id`,
which is derived from the message, so sends are idempotent. Apple reports neither delivery nor reading:
an accepted send stays SENT, which is final for it.

Apple posts what users do to the MSP's one URL, `{public_url}/callbacks/apple`, naming the business in
`Destination-Id` (`routes_by_account`: the core finds the channel by it); a channel's own
`{public_url}/callbacks/apple/{accountId}` works as well. There is no set-up call. In sandbox mode the
set-up plays that registration with the simulator (`POST /_sandbox/businesses`), which then knows where
to post and with which key to sign.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from openmmp.kit.http import HttpClient
from openmmp.providers.apple import callbacks
from openmmp.providers.apple.auth import msp_key
from openmmp.providers.apple.client import client_for
from openmmp.providers.apple.payload import SUPPORTED_TYPES, to_apple
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    CallbackRequest,
    Credentials,
    Ident,
    Link,
    Outgoing,
    Provider,
    ProviderContext,
    RateLimit,
    SandboxUser,
    SandboxWritten,
    Secret,
    SendUnit,
    one_unit_each,
)
from openmmp.providers.simulation import sandbox_control, sandbox_inbound

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig

BUSINESSES_PATH = "/_sandbox/businesses"
"""The simulator's stand-in for Apple's register: where a business's messages go and the MSP's key."""
INBOUND_REGISTERED = "registered"
"""The field of the simulator's `/_sandbox/inbound` answer saying whether the business is registered."""
_CHECK_REQUEST_IDENTIFIER = "00000000-0000-5000-8000-000000000000"
"""A stand-in request identifier for the accept-time check (the same length as the real ones)."""


class AppleCredentials(Credentials):
    """A Messages for Business account (`businessId`) and the MSP account that speaks for it."""

    identity_fields = ("business_id",)

    business_id: str = Ident
    msp_id: str = Ident
    secret: str = Secret

    @field_validator("secret")
    @classmethod
    def _base64(cls, value: str) -> str:
        # Refused when the channel is saved rather than at its first send: the key is the decoded secret.
        try:
            msp_key(value)
        except ValueError:
            raise ValueError("must be base64, the MSP secret as Apple hands it out") from None
        return value


class AppleProvider(Provider):
    name = "apple"
    application = Application.APPLE
    title = "Apple Messages for Business"
    message_types = SUPPORTED_TYPES
    # Apple publishes no limit and answers 429 when it wants less; a pace no business chat outruns.
    rate_limit = RateLimit(requests=50, window_seconds=1.0, per="business")
    idempotent = True
    addressing = Addressing.CONVERSATION
    credentials_model = AppleCredentials
    default_base_url = "https://mspgw.push.apple.com"
    callback_auth = (
        "`Authorization: Bearer <JWT>`: HS256 with the base64-decoded MSP secret, `aud` the channel's "
        "`mspId`, issued within the last hour; `Destination-Id` must be the channel's `businessId`. It "
        "proves the sender (the body, maybe gzip-compressed, is left to TLS). Apple posts every business "
        "of the MSP to one URL: `/callbacks/apple` finds the channel by `Destination-Id`."
    )
    callback_proof = "sender"
    routes_by_account = True
    sandbox_credentials = {
        "businessId": "demo-business",
        "mspId": "demo-msp",
        "secret": "b3Blbm1tcCBzYW5kYm94IG1zcCBzZWNyZXQ6IG5vdCBhIHJlYWwgb25l",
    }
    reports_delivery = False
    reports_read = False

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        to_apple(content, request_identifier=_CHECK_REQUEST_IDENTIFIER)

    def needs_setup(self, *, sandbox: bool) -> bool:
        return sandbox

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        if not ctx.sandbox:
            return
        body = {
            "businessId": str(credentials["businessId"]),
            "mspId": str(credentials["mspId"]),
            "secret": str(credentials["secret"]),
            "callbackUrl": callback_url,
        }
        await sandbox_control(ctx.http, f"{ctx.base_url}{BUSINESSES_PATH}", body, simulator=self.title)

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        return one_unit_each(outgoing, client_for(ctx, credentials).send)

    def callback_account(self, request: CallbackRequest) -> Sequence[str] | None:
        business = request.header(callbacks.DESTINATION_HEADER)
        return (business,) if business else None

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        return callbacks.verify_request(
            request.header("authorization"), request.header(callbacks.DESTINATION_HEADER), credentials
        )

    def readable_body(self, request: CallbackRequest) -> bytes:
        return callbacks.inflate(request.body)

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return callbacks.parse_body(body)

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.apple.simulator import create_apple_simulator

        return create_apple_simulator(config, http)

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        # Apple users share no phone number: a phone only picks the sandbox user (their opaque id ends in
        # its last digit, which picks the outcome of sends to them). A text naming an item of the list
        # picker or quick reply the user was sent last is their pick of it.
        if not user.text.strip():
            raise ValueError("text: required (an Apple Messages user writes in with a message)")
        body: dict[str, Any] = {"businessId": str(credentials["businessId"]), "name": user.name}
        body["text"] = user.text
        if user.phone:
            body["phone"] = user.phone
        if user.user_id:
            body["userId"] = user.user_id
        answer = await sandbox_inbound(
            ctx,
            body,
            simulator=self.title,
            registered=INBOUND_REGISTERED,
            missing="the channel's business is not registered",
        )
        return SandboxWritten(
            user_id=str(answer.get("userId", "")), message_token=str(answer.get("messageId", ""))
        )
