"""RCS Business Messaging (Google RBM) on the provider contract (providers.md §4).

A channel is an RBM agent (`agentId`) and the Google service account that acts for it: the company's own
key file (`serviceAccountJson`), or, for an agent the platform made for the company (`create_agent`), the
operator's partner service account (`OPENMMP_PROVIDERS__RBM_PARTNER_SERVICE_ACCOUNT`). Messages go one per
request to `/v1/phones/+{E.164}/agentMessages`, authorised by an access token the service account's
signed JWT buys (`auth`), with a `messageId` derived from the message (`client`), which RBM keeps as its
idempotency key. RBM's events come to the channel's callback URL as Pub/Sub pushes signed with the
operator's webhook client token (`callbacks`), among them each region's launch-state changes.

The platform runs agents for companies (`manages_agents`, `management`): it makes the brand and agent in
Business Communications, edits its profile, asks for its verification and launch (per region, or on
Indonesian or Indian carriers with what they review), invites test devices (all an agent reaches before
it is launched) and checks which phones it reaches.

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
    AgentState,
    CallbackEvent,
    CallbackReply,
    CallbackRequest,
    Link,
    Outgoing,
    PhoneCapabilities,
    Provider,
    ProviderContext,
    ProviderError,
    RateLimit,
    SandboxUser,
    SandboxWritten,
    SendOutcome,
    SendUnit,
    TesterResult,
    one_unit_each,
)
from openmmp.providers.rbm import auth, callbacks
from openmmp.providers.rbm.client import RbmClient
from openmmp.providers.rbm.content import content_message
from openmmp.providers.rbm.credentials import (
    DEFAULT_TRAFFIC_TYPE,
    RcsCredentials,
    ServiceAccount,
    acting_account,
)
from openmmp.providers.rbm.management import (
    BATCH_GET_MAX,
    DEFAULT_MANAGEMENT_URL,
    DEFAULT_REGIONAL_URL,
    LAUNCH_FORMS,
    AgentManager,
    RcsAgentProfile,
    RcsVerificationRequest,
)
from openmmp.providers.rbm.sandbox import SANDBOX_SERVICE_ACCOUNT_JSON
from openmmp.providers.simulation import sandbox_control, sandbox_inbound

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig


class RbmOptions(BaseModel):
    client_token: str = Field(
        default="",
        description="The client token of the RBM webhook (Google's Business Communications console): it "
        "keys X-Goog-Signature and is checked when Google verifies the webhook URL.",
    )
    partner_service_account: str = Field(
        default="",
        description="The operator's RBM partner service account key file (JSON text): it creates and "
        "manages the agents the platform runs for companies, and acts for every RCS channel without a "
        "serviceAccountJson of its own. The sandbox's published key in sandbox mode.",
    )
    management_base_url: str = Field(
        default=DEFAULT_MANAGEMENT_URL,
        description="Business Communications API base URL (agent management); the simulator in sandbox mode.",
    )
    regional_base_url: str = Field(
        default=DEFAULT_REGIONAL_URL,
        description="The regional RBM host users:batchGet needs (the region of the numbers checked); the "
        "simulator in sandbox mode.",
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
    manages_agents = True
    agent_path = "rcs"
    agent_model = RcsAgentProfile
    verification_model = RcsVerificationRequest
    launch_forms = LAUNCH_FORMS
    reachability_batch = BATCH_GET_MAX
    reachability_rate = RateLimit(requests=600, window_seconds=60.0, per="project")

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        # Any expiry is fine: it goes to RBM as a ttl (RBM keeps a message 30 days at most anyway).
        content_message(content)

    def needs_setup(self, *, sandbox: bool) -> bool:
        return sandbox

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        try:
            account = acting_account(ctx, credentials)
        except ValueError as exc:
            raise ProviderError("RBM_CREDENTIALS", str(exc), retryable=False) from None
        try:
            public_pem = _public_pem(account)
        except ValueError as exc:
            # Only a channel's own key file can get here: the partner's was loaded whole already.
            raise ProviderError(
                "RBM_CREDENTIALS", f"credentials.serviceAccountJson: private_key {exc}", retryable=False
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
        try:
            account = acting_account(ctx, credentials)
        except ProviderError as refused:
            # The operator's partner account is what is missing: each message fails with that cause, which
            # a raise here would reduce to its exception's type.
            return _all_failing(outgoing, refused)
        client = RbmClient(
            ctx.http,
            ctx.base_url,
            agent_id=str(credentials["agentId"]),
            account=account,
            token_uri=auth.token_endpoint(ctx, account),
            traffic_type=str(credentials.get("messageTrafficType") or DEFAULT_TRAFFIC_TYPE),
        )

        return one_unit_each(outgoing, client.send)

    # ---- agent management (`management`) ----

    async def create_agent(self, ctx: ProviderContext, profile: Mapping[str, Any]) -> dict[str, Any]:
        # No serviceAccountJson in what it returns: the partner account that made the agent acts for it.
        return await AgentManager(ctx, {}).create(profile)

    async def edit_agent(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], profile: Mapping[str, Any]
    ) -> None:
        await AgentManager(ctx, credentials).edit(profile)

    async def agent_state(self, ctx: ProviderContext, credentials: Mapping[str, Any]) -> AgentState:
        return await AgentManager(ctx, credentials).state()

    async def add_testers(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phones: Sequence[str]
    ) -> list[TesterResult]:
        return await AgentManager(ctx, credentials).add_testers(phones)

    async def capabilities(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phone: str
    ) -> PhoneCapabilities:
        return await AgentManager(ctx, credentials).capabilities(phone)

    async def reachable(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phones: Sequence[str]
    ) -> frozenset[str]:
        return await AgentManager(ctx, credentials).reachable(phones)

    async def request_verification(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], request: Mapping[str, Any]
    ) -> AgentState:
        return await AgentManager(ctx, credentials).request_verification(request)

    async def request_launch(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], form: str, request: Mapping[str, Any]
    ) -> AgentState:
        return await AgentManager(ctx, credentials).request_launch(form, request)

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
        answer = await sandbox_inbound(ctx, body, simulator=self.title, registered="callbackUrl")
        return SandboxWritten(user_id=phone, message_token=str(answer.get("messageId", "")))


def _all_failing(outgoing: Sequence[Outgoing], error: ProviderError) -> list[SendUnit]:
    """Units that answer `error` for every message, sending nothing."""

    async def fail(_message: Outgoing) -> SendOutcome:
        return error

    return one_unit_each(outgoing, fail)


def _public_pem(account: ServiceAccount) -> str:
    """The public half of the account's key (what the simulator needs to check its JWTs; no secret)."""
    public = account.private_key().public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
