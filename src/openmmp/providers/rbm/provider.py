"""RCS Business Messaging (Google RBM) on the provider contract (providers.md §4).

A channel is an RBM agent (`agentId`) with the Google service account key file that acts for it
(`serviceAccountJson`). Messages go one per request to `/v1/phones/+{E.164}/agentMessages`, authorised by
an access token the service account's signed JWT buys (`auth`), with a `messageId` derived from the message
(`client`), which RBM keeps as its idempotency key. RBM's events come to the channel's callback URL as
Pub/Sub pushes signed with the operator's webhook client token (`callbacks`).

Where events come from: in sandbox mode the set-up registers the channel's callback URL (and its service
account's public key, so the simulator can check the JWTs it is sent) with the simulator. Outside sandbox
mode the operator configures the webhook in Google's Business Communications console, once per agent:
URL `{public_url}/callbacks/rbm/{accountId}` and the client token `OPENMMP_PROVIDERS__RBM_CLIENT_TOKEN`;
Google's check of the URL (it posts the client token and a secret to echo) is answered here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, Field

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    CallbackReply,
    CallbackRequest,
    Link,
    Outgoing,
    Provider,
    ProviderContext,
    ProviderError,
    RateLimit,
    SandboxUser,
    SandboxWritten,
    SendUnit,
    one_unit_each,
)
from openmmp.providers.rbm import callbacks
from openmmp.providers.rbm.client import RbmClient
from openmmp.providers.rbm.content import content_message
from openmmp.providers.rbm.credentials import (
    DEFAULT_TRAFFIC_TYPE,
    RcsCredentials,
    ServiceAccount,
    service_account_of,
)
from openmmp.providers.rbm.sandbox import SANDBOX_SERVICE_ACCOUNT_JSON
from openmmp.providers.simulation import sandbox_control

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig

TOKEN_PATH = "/token"  # noqa: S105 - a path, not a secret


class RbmOptions(BaseModel):
    client_token: str = Field(
        default="",
        description="The client token of the RBM webhook (Google's Business Communications console): it "
        "keys X-Goog-Signature and is checked when Google verifies the webhook URL.",
    )


class RbmProvider(Provider):
    name = "rbm"
    application = Application.RCS
    title = "RCS Business Messaging (Google RBM)"
    message_types = frozenset({"text", "rich_card", "picture", "video", "file"})
    # providers.md documents no per-agent send quota (only users:batchGet's 600 per minute); 300 per minute
    # is a cautious default the simulator enforces too. Operators set their project's quota.
    rate_limit = RateLimit(requests=300, window_seconds=60.0, per="agent")
    idempotent = True
    addressing = Addressing.PHONE
    credentials_model = RcsCredentials
    options_model = RbmOptions
    callback_auth = (
        "`X-Goog-Signature`: base64 HMAC-SHA512 of the base64-decoded `message.data`, keyed by the "
        "operator's RBM webhook client token; the event must name the channel's `agentId`. Google's "
        "webhook check (`clientToken`, `secret`) is answered with the secret as plain text."
    )
    reports_read = True
    sandbox_credentials = {"agentId": "demo-agent", "serviceAccountJson": SANDBOX_SERVICE_ACCOUNT_JSON}
    default_base_url = "https://rcsbusinessmessaging.googleapis.com"

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        # Any expiry is fine: it goes to RBM as a ttl (RBM keeps a message 30 days at most anyway).
        content_message(content)

    def needs_setup(self, *, sandbox: bool) -> bool:
        return sandbox

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        try:
            account = service_account_of(credentials)
            public_pem = _public_pem(account)
        except (KeyError, ValueError) as exc:
            raise ProviderError(
                "RBM_CREDENTIALS", f"credentials.serviceAccountJson: {exc}", retryable=False
            ) from None
        body = {
            "agentId": str(credentials["agentId"]),
            "callbackUrl": callback_url,
            "clientEmail": account.client_email,
            "publicKeyPem": public_pem,
        }
        await sandbox_control(ctx.http, f"{ctx.base_url}/_sandbox/agents", body, simulator=self.title)

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        account = service_account_of(credentials)
        client = RbmClient(
            ctx.http,
            ctx.base_url,
            agent_id=str(credentials["agentId"]),
            account=account,
            # The simulator plays the token endpoint in sandbox mode, whatever the key file says.
            token_uri=f"{ctx.base_url}{TOKEN_PATH}" if ctx.sandbox else account.token_uri,
            traffic_type=str(credentials.get("messageTrafficType") or DEFAULT_TRAFFIC_TYPE),
        )

        return one_unit_each(outgoing, client.send)

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        client_token = ctx.secret("client_token", callbacks.SANDBOX_CLIENT_TOKEN)
        return callbacks.verify_callback(
            request.body,
            request.header(callbacks.SIGNATURE_HEADER),
            client_token,
            str(credentials.get("agentId") or ""),
        )

    def acknowledge(self, request: CallbackRequest, outcome: str) -> CallbackReply | None:
        shaken = callbacks.handshake(request.body)
        if shaken is None:
            return None
        return CallbackReply(200, shaken[1].encode(), media_type="text/plain")

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return callbacks.parse_callback(body)

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.rbm.simulator import create_rbm_simulator

        return create_rbm_simulator(config, http)

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        if not user.phone:
            raise ValueError("phone: required: an RCS user writes from a phone number")
        phone = user.phone.removeprefix("+")
        body = {"agentId": str(credentials["agentId"]), "phone": phone, "text": user.text}
        answer = await sandbox_control(
            ctx.http, f"{ctx.base_url}/_sandbox/inbound", body, simulator=self.title
        )
        if not answer.get("callbackUrl"):
            # The simulator forgets the agents' callback URLs when it restarts; the channel's set-up, run
            # again at every start of the workers, registers them. Say so rather than lose the message.
            raise ProviderError(
                "SIMULATOR_NOT_SET_UP",
                "the channel's callback URL is not registered with the simulator yet (the channel's "
                "set-up runs when the workers start); retry in a few seconds",
                retryable=True,
            )
        return SandboxWritten(user_id=phone, message_token=str(answer.get("messageId", "")))


def _public_pem(account: ServiceAccount) -> str:
    """The public half of the account's key (what the simulator needs to check its JWTs; no secret)."""
    public = account.private_key().public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
