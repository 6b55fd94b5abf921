"""The contract between OpenMMP's core and every upstream: what a provider declares and what it does.

A provider lives in `providers/<name>/` and is listed once in `providers/registry.py`, keyed by its
`Application`. Dispatch, callbacks, accept-time checks, channel set-up, settings, the CLI's `simulate` and
the sandbox read the registry and talk to every provider through this contract only; none of them knows
which upstream it is talking to. Providers speak one upstream protocol through `kit.http.HttpClient` and
never touch the database. They translate:

- outbound: MMP message objects (api.md §3, wire names, placeholders already rendered) into upstream
  requests, one `SendUnit` per request (what one rate-limit token buys), and the upstream's answers into
  `SendOk` or a `ProviderError` that says whether a retry can help and why;
- inbound: a callback's request (method, headers, query, raw bytes; checked over those bytes) into
  neutral events the core applies: `StatusEvent`, `InboundEvent`, `TemplateEvent`, `ChannelEvent`,
  `PingEvent`;
- set-up: telling the upstream where to call back (idempotent; re-run at every start);
- onboarding, for upstreams that hand a company its account through a sign-up flow (`onboarding`): the
  page its admin signs up on, and the steps that turn what the flow sent back into credentials;
- agent management, for upstreams whose accounts the platform runs for the company (`manages_agents`,
  RBM's agents): creating and editing the account from a profile, its verification and launch state,
  test devices, which phones it reaches, and the requests for verification and launch;
- credentials that expire (`refreshes_credentials`, Zalo's OAuth tokens): renewing them when the
  upstream refuses them, while the core stores what comes back, one renewal at a time per channel;
- consent, for upstreams through which a business asks an end user's permission (`asks_consent`, Zalo's
  call consent): asking it, and reading its state;
- sandbox: a simulator that speaks the same protocol, and a way to make a sandbox end user write in.

Upstreams reached over sessions kept open (SMPP binds) rather than request by request declare
`connected`: a worker process keeps a `Link` per channel (`Provider.link`), sends go through it (`plan`
is handed it), and what the upstream delivers on it (reports, inbound messages) is handed to the core as
bodies `parse` reads, so that it is stored, deduplicated and applied exactly as a callback would be.
Upstreams that report to a server of ours rather than to the callback route (bounces mailed to an SMTP
server) declare `listens`: each worker process runs the provider's `listener`, whose sink names the
channel of each body.

`tests/providers/conformance/` proves every registered provider against its own simulator.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, Field

from openmmp.kit.http import HttpClient, IpAddress
from openmmp.kit.schemas import RequestModel, ResponseModel
from openmmp.providers.applications import Application

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig


class ProviderError(Exception):
    """An upstream refused a request or could not be reached.

    `retryable` is the adapter's verdict: True for timeouts, connection errors, 5xx and rate limiting
    (`rate_limited`, with the upstream's `retry_after` in seconds when it gave one); False for errors a
    retry cannot fix (bad data, unknown receiver, blocked account). `code` is a stable machine word such as
    ``"VIBER_BOT_6"`` and `message` the upstream's own text, e.g. ``"receiverNotSubscribed"``; both end up
    in the message's `error` object, so neither may contain a secret.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        rate_limited: bool = False,
        retry_after: float | None = None,
        stale_credentials: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.rate_limited = rate_limited
        self.retry_after = retry_after
        self.stale_credentials = stale_credentials
        """The upstream refused the credentials because they expired (an OAuth access token): the core
        renews them with `Provider.refresh_credentials` and calls again. Only providers that declare
        `refreshes_credentials` set it."""


class CallbackRejected(Exception):
    """A callback whose signature is missing or wrong, or whose body cannot be understood."""


@dataclass(frozen=True, slots=True)
class SendOk:
    """The upstream accepted the message; `provider_message_id` is how its callbacks will name it.

    `parts`: when the message went as several upstream messages (the segments of a long SMS), each one's
    id in order; reports then name parts, `provider_message_id` names the whole and must be none of
    them, and the message is final once every part is. Empty for a message sent whole.
    """

    provider_message_id: str
    parts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """One multi-receiver call: the shared message id and the receivers the upstream refused."""

    provider_message_id: str
    failed: Mapping[str, ProviderError] = field(default_factory=dict)


StatusName = Literal["DELIVERED", "READ", "FAIL"]


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A delivery report. `dedupe_key` is equal for repeats of the same upstream event.

    `user_id` names the receiver when one upstream message id covers several (a broadcast to many users);
    `cumulative` says the report covers that user's earlier messages too (a read watermark, such as Viber
    Bot's `seen`): the core then marks those READ as well. `up_to_ms` is a watermark by time instead
    (Messenger's `delivery` and `read` watermarks): the report covers every message to `user_id` on the
    channel sent (or delivered) up to that time, and `provider_message_id` is empty.
    """

    provider_message_id: str
    status: StatusName
    timestamp_ms: int
    dedupe_key: str
    raw: Mapping[str, Any]
    user_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    cumulative: bool = False
    up_to_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Contact:
    """An end user as the upstream describes them; empty strings where it says nothing."""

    id: str
    name: str = ""
    avatar_url: str = ""
    language: str = ""
    country: str = ""
    phone: str = ""


InboundKind = Literal["message", "subscribed", "unsubscribed", "conversation_started"]


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """Something an end user did: wrote, subscribed, unsubscribed or opened the conversation.

    `message` is the MMP message object of api.md §5.2: ``{"type": ..., "message": ..., "extra": raw}``,
    with `type` one of the MMP MessageType names (``SUBSCRIBED`` etc. for the non-message kinds).
    """

    kind: InboundKind
    contact: Contact
    message: Mapping[str, Any]
    timestamp_ms: int
    dedupe_key: str
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TemplateEvent:
    """The upstream decided about a message template (e.g. WhatsApp's `message_template_status_update`),
    or changed it (`template_category_update`).

    `template_id` is the upstream's id of the template; `status` one of the MMP TemplateStatus names, None
    when the event leaves the status as it is. `changes` are fields of the template's form (wire names of
    `template_model`) the upstream set anew, e.g. ``{"category": "MARKETING"}``; `cause` says what
    happened, in a sentence the company reads.
    """

    template_id: str
    status: Literal["APPROVED", "REJECTED", "REQUEST"] | None
    cause: str
    timestamp_ms: int
    dedupe_key: str
    raw: Mapping[str, Any]
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TemplateReview:
    """A template as the upstream holds it after a submission or an edit: its id there (which its
    `TemplateEvent`s name) and where its review stands (`status`, an MMP TemplateStatus name; `cause` the
    upstream's reason for a rejection)."""

    template_id: str
    status: Literal["APPROVED", "REJECTED", "REQUEST"] = "REQUEST"
    cause: str = ""


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """The upstream changed the channel's own state (an agent launched, an account suspended, ...).

    `status` is one of the MMP ChannelStatus names; the core records it and emits a `type: 4` webhook.
    """

    status: Literal["LAUNCH", "SUSPEND", "REJECT", "ACCEPT"]
    cause: str
    timestamp_ms: int
    dedupe_key: str
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PingEvent:
    """The upstream checking that the callback URL answers (Viber's `webhook` event).

    `dedupe_key` is equal for repeats of the same check, so a replayed ping is stored once.
    """

    raw: Mapping[str, Any]
    timestamp_ms: int
    dedupe_key: str


CallbackEvent = StatusEvent | InboundEvent | TemplateEvent | ChannelEvent | PingEvent


# ---- what a provider declares ----------------------------------------------------------------------------


class Addressing(StrEnum):
    """How a send names its receiver on the provider's channels."""

    PHONE = "phone"
    """By phone number only (OA channels: Viber BM, SMS, ...)."""
    CONVERSATION = "conversation"
    """By the end user's conversation (`to`), or by a phone number the conversation has shared (bots)."""
    BOTH = "both"
    """By phone number, or by conversation when replying to one (WhatsApp, SMS with replies)."""
    EMAIL = "email"
    """By e-mail address (`email` in place of `phone`)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """An upstream's published limit: `requests` per `window_seconds`, counted per `per` (e.g. "bot")."""

    requests: int
    window_seconds: float
    per: str


# ---- agent management (only providers that declare `manages_agents`) -------------------------------------


@dataclass(frozen=True, slots=True)
class AgentState:
    """The upstream account's state as the upstream reports it now.

    `status` is the MMP ChannelStatus name the channel should have for it: LAUNCH (reaches everybody, in
    at least one region), ACCEPT (made, reaches its test devices only: not launched, or launch pending),
    SUSPEND or REJECT, with `cause` saying why in a sentence ("" when there is nothing to say).
    `verification` is the upstream's verification state (e.g. "VERIFIED"); `launches` each region's
    launch state (upstream words, e.g. {"asia-pacific": "LAUNCHED"}).
    """

    status: Literal["LAUNCH", "ACCEPT", "SUSPEND", "REJECT"]
    cause: str
    verification: str
    launches: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class TesterResult:
    """One phone asked to become a test device: `status` INVITED (the invitation went out), EXISTED (it
    was one already) or FAIL, with `cause` saying why."""

    phone: str
    status: Literal["INVITED", "EXISTED", "FAIL"]
    cause: str = ""


@dataclass(frozen=True, slots=True)
class PhoneCapabilities:
    """Whether the account can reach `phone` (E.164 digits without "+") and the features its device has."""

    phone: str
    enabled: bool
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Consent:
    """An end user's consent as the upstream knows it (`Provider.consent_status`, `request_consent`)."""

    phone: str
    state: Literal["GRANTED", "REQUESTED", "REFUSED", "NONE"]
    """GRANTED: the business may (call the user); REQUESTED: asked, no answer yet; REFUSED: the user
    refused or blocked; NONE: never asked, or the earlier consent lapsed."""
    code: int
    """The upstream's own code for it (Zalo: 0 approved, 2 request sent, 3 rejected, ...)."""
    message: str
    expires_at_ms: int | None = None
    """When a granted consent (or a pending request) lapses, if the upstream says."""


class ConsentAnswer(ResponseModel):
    """A consent as the API answers it; a provider that `asks_consent` names its own subclasses (Zalo's
    ZaloRequestConsentResponse, ZaloCheckConsentResponse) so the OpenAPI document shows the MMP names."""

    phone: str
    status: Literal["GRANTED", "REQUESTED", "REFUSED", "NONE"]
    code: int
    message: str
    expired_time: int | None = None

    @classmethod
    def of(cls, consent: Consent) -> ConsentAnswer:
        return cls(
            phone=consent.phone,
            status=consent.state,
            code=consent.code,
            message=consent.message,
            expired_time=consent.expires_at_ms,
        )


@dataclass(frozen=True)
class LaunchForm:
    """One way to ask for a launch: `path` is its segment under `.../launch` ("" for the plain request),
    `model` the request (its class name is the schema's name in the OpenAPI document), `title` what it is
    for, in a sentence."""

    path: str
    model: type[RequestModel]
    title: str


Secret = Field(min_length=1, max_length=4096)
"""A credential that is a secret (a token, a key): never empty, at most 4 KiB."""
Ident = Field(min_length=1, max_length=200)
"""A credential that names an upstream account (a page, a business): never empty."""


class Credentials(RequestModel):
    """What a channel needs to act on its upstream (api.md §4.2); stored encrypted, never returned.

    `identity_fields` name the fields that say which upstream account the channel acts as (a Viber BM
    service, a bot's token, a WhatsApp phone number id, an SMPP account): that account belongs to one
    channel only. `operator_assigned`: the operator hands the identity out (Viber BM service ids), so
    only the operator or its partner may bind it to a company.
    """

    identity_fields: ClassVar[tuple[str, ...]] = ()
    operator_assigned: ClassVar[bool] = False
    target_fields: ClassVar[tuple[tuple[str, str], ...]] = ()
    """(host field, port field) pairs naming where the server will connect for the channel (an SMSC):
    tenant input, so the core refuses private and local hosts there as it does for webhook URLs."""

    def targets(self) -> list[tuple[str, str, int]]:
        """Where the server will connect: (the host field's wire name, host, port) for each target."""
        found = []
        for host_field, port_field in self.target_fields:
            alias = self.__class__.model_fields[host_field].alias or host_field
            found.append((alias, str(getattr(self, host_field)), int(getattr(self, port_field))))
        return found

    def identity(self) -> str | None:
        """The upstream account these credentials act as, as one string; None when there is none."""
        if not self.identity_fields:
            return None
        return self.identity_of([str(getattr(self, name)) for name in self.identity_fields])

    @staticmethod
    def identity_of(values: Sequence[str]) -> str:
        """The identity string of the values of the identity fields, in their order."""
        return "\x1f".join(value.strip().lower() for value in values)

    @classmethod
    def identity_name(cls) -> str:
        """How a 400/403/409 names the identity: `credentials.<first identity field's wire name>`."""
        field = cls.model_fields[cls.identity_fields[0]]
        return f"credentials.{field.alias or cls.identity_fields[0]}"

    def operator_acts(self) -> str | None:
        """When these credentials leave the operator's own upstream account to act for the channel (an
        RCS agent without a key file of its own, for which the operator's partner account acts): the wire
        name of the field a company must give instead. None otherwise.

        Only the platform makes such credentials (`Provider.create_agent`); a company giving them would
        send as the operator, so the core refuses them from a company.
        """
        return None


# ---- what a provider is handed and hands back -------------------------------------------------------------


@dataclass(frozen=True)
class ProviderContext:
    """What the core gives a provider at run time.

    `base_url` is the upstream's (or its simulator's) base URL, from the operator's settings; `options` are
    the provider's own operator settings (its `options_model`, already validated); `public_url` is where
    this platform is reached from outside (callbacks go to `{public_url}/callbacks/{name}/{accountId}`).
    """

    http: HttpClient
    base_url: str
    public_url: str
    sandbox: bool
    options: Mapping[str, Any] = field(default_factory=dict)
    target_check: TargetCheck | None = None
    """Applied when connecting to a tenant's target (`Credentials.target_fields`): to each address its
    host resolves to then, since a name can change after the channel was saved. None: no check."""

    def option(self, option: str, sandbox_default: str) -> str:
        """The operator's setting `option` (e.g. an app id); when unset, in sandbox mode the simulator's
        published `sandbox_default`, else "" (the feature it serves is not configured)."""
        configured = str(self.options.get(option) or "")
        return configured or (sandbox_default if self.sandbox else "")

    def secret(self, option: str, sandbox_default: str) -> str:
        """The operator's secret `option` (e.g. a callback secret); when unset, in sandbox mode the
        simulator's published `sandbox_default`, else "" (nothing can be proven with it)."""
        return self.option(option, sandbox_default)


TargetCheck = Callable[[str, IpAddress], str | None]
"""Why the server may not connect to `address` for a tenant's `host` (a phrase following "<address> is"),
or None when it may."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send, as dispatch hands it over.

    `key` is the message's internal id: stable across retries, so it is the idempotency key wherever the
    upstream takes one. `recipient` is what `Addressing` produced: phone digits (E.164, no "+") or the
    upstream's id of the end user. `expire_at_ms` is when the message stops being worth delivering.
    """

    key: int
    recipient: str
    content: Mapping[str, Any]
    expire_at_ms: int | None = None
    account_id: str = ""
    """The channel's accountId, for upstreams whose reports come back by a route that must name it (a
    bounce address); dispatch always sets it."""


SendOutcome = SendOk | ProviderError
Outcomes = dict[int, SendOutcome]
"""Per `Outgoing.key`: the upstream accepted it, or why not."""


@dataclass(frozen=True, slots=True)
class SendUnit:
    """One upstream request: what one rate-limit token buys.

    `call()` sends it and returns an outcome for every key in `keys`; it reports upstream failures as
    `ProviderError` outcomes instead of raising (an exception escaping it is the core's to contain).
    """

    keys: tuple[int, ...]
    call: Callable[[], Awaitable[Outcomes]]


def one_unit_each(
    outgoing: Sequence[Outgoing], send: Callable[[Outgoing], Awaitable[SendOutcome]]
) -> list[SendUnit]:
    """A `SendUnit` per message, for upstreams that take one message per request: `send` answers its
    outcome or raises the `ProviderError` that is its outcome."""

    def unit(message: Outgoing) -> SendUnit:
        async def call() -> Outcomes:
            try:
                return {message.key: await send(message)}
            except ProviderError as exc:
                return {message.key: exc}

        return SendUnit((message.key,), call)

    return [unit(message) for message in outgoing]


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A request on `/callbacks/{provider}/{accountId}`: `headers` with lower-case names, the raw body."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header's value by its name in any case; None when absent."""
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class CallbackReply:
    """What to answer a verification handshake with (e.g. the `hub.challenge` of a GET)."""

    status_code: int
    body: bytes
    media_type: str = "text/plain"


class CallbackUnverified(Exception):
    """A callback whose signature, token or handshake is missing or wrong: answered 401, nothing stored."""


@dataclass(frozen=True, slots=True)
class SandboxUser:
    """A sandbox end user writing to a channel: `name`, their `text`, and their phone when they share it.

    `user_id` picks a user the simulator made up before (providers without such ids ignore it).
    """

    name: str
    text: str
    phone: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class SandboxWritten:
    """What the simulator made of a `SandboxUser`: the end user's upstream id and the message's token."""

    user_id: str
    message_token: str


EventSink = Callable[[bytes], Awaitable[str]]
"""Where a `Link` hands what the upstream delivered: one body that `Provider.parse` reads. Returns the
outcome once the event is stored (a repeat is "duplicate"); raises when it could not be stored, and the
link then has the upstream deliver it again."""

ChannelSink = Callable[[str, bytes], Awaitable[str]]
"""Where a provider's `listener` hands what arrived: the channel's accountId and one body that
`Provider.parse` reads. Returns as `EventSink` does, or `REFUSED` when no such channel exists or `parse`
refused the body: the listener then refuses it for good. Raises when it could not be stored."""

REFUSED = "refused"


class Link(ABC):
    """A channel's connections to a `connected` upstream, owned by one worker process.

    `run` keeps them up (connecting again with back-off after a failure) until `stop` is set, then closes
    them. Sends go through it (`Provider.plan` gets it); what arrives on it goes to the `EventSink` it was
    made with, and is acknowledged to the upstream only once the sink has stored it.
    """

    @abstractmethod
    async def run(self, stop: asyncio.Event) -> None:
        """Keep the connections up until `stop` is set; close them before returning."""

    @property
    @abstractmethod
    def up(self) -> int:
        """How many of its connections are up now."""


# ---- the contract -----------------------------------------------------------------------------------------


class Provider(ABC):
    """One upstream. Subclasses set the class attributes and implement the abstract methods.

    Everything here is safe to call concurrently: a provider keeps no per-channel state of its own.
    """

    name: ClassVar[str]
    """The provider's word in URLs and settings: `/callbacks/{name}/...`, `OPENMMP_PROVIDERS__{NAME}_...`."""
    application: ClassVar[Application]
    title: ClassVar[str]
    """How people call the upstream, e.g. "Viber Business Messages"."""
    message_types: ClassVar[frozenset[str]]
    """The MMP MessageTypes (api.md §2) this provider sends; anything else is refused at accept time."""
    example_message: ClassVar[Mapping[str, Any]] = {"type": "text", "message": "Hello from OpenMMP"}
    """A message this provider can send as it is (the banner's example, the conformance suite's send)."""
    rate_limit: ClassVar[RateLimit]
    """The upstream's published limit; the operator may override it (`OPENMMP_LIMITS__{NAME}_...`)."""
    recipient_rate: ClassVar[RateLimit | None] = None
    """The upstream's limit to one end user (WhatsApp's pair rate: about one message per 6 s), after a
    burst of `recipient_burst`; dispatch holds a recipient's further messages back until it allows them.
    None: no such limit."""
    recipient_burst: ClassVar[int] = 1
    idempotent: ClassVar[bool]
    """True when the upstream collapses a repeated send (it takes `Outgoing.key` as idempotency key)."""
    addressing: ClassVar[Addressing]
    credentials_model: ClassVar[type[Credentials]]
    options_model: ClassVar[type[BaseModel] | None] = None
    """The provider's own operator settings (e.g. a partner-level callback secret), if any."""
    default_base_url: ClassVar[str]
    """The real upstream's base URL, used outside sandbox mode when the operator configures none."""
    callback_auth: ClassVar[str]
    """How its callbacks are proven, in a sentence for the OpenAPI document."""
    callback_proof: ClassVar[Literal["body", "sender"]] = "body"
    """What `verify` proves: "body", a signature over the raw body (a changed byte is refused); "sender",
    only who sent it (HTTP Basic, as MM7's MMSCs do), the body's integrity being left to TLS."""
    routes_by_account: ClassVar[bool] = False
    """The upstream posts every account's callbacks to one URL (Apple: the MSP's endpoint), so besides
    `/callbacks/{name}/{accountId}` the core serves `/callbacks/{name}`, where it finds the channel by the
    account the request names (`callback_account`) and verifies the request with that channel's
    credentials."""
    verifies_with_get: ClassVar[bool] = False
    """The upstream verifies a callback URL with a GET handshake (`challenge`); for the others, a GET on
    the callback route is a 405 whatever the channel, so it reveals nothing."""
    receives_messages: ClassVar[bool] = True
    """End users can write in (inbound messages become `type: 2` webhooks)."""
    sandbox_credentials: ClassVar[Mapping[str, Any]]
    """The demo channel's credentials in sandbox mode (wire names; the simulator takes any)."""
    reports_delivery: ClassVar[bool] = True
    """The upstream tells when a message is delivered (DELIVERED). Telegram's Bot API does not: an
    accepted send stays SENT, which is final for it (no expiry fails it, no fallback waits for it)."""
    reports_read: ClassVar[bool] = True
    """The upstream tells when a message is read (READ); SMS, for one, reports delivery only."""
    sends_parts: ClassVar[bool] = False
    """Its messages may go as several upstream messages (`SendOk.parts`), whose reports each name a
    part: the core keeps each part's verdict and changes the message once every part is final."""
    connected: ClassVar[bool] = False
    """Reached over connections a worker keeps open per channel (`link`), not request by request: its
    reports and inbound messages arrive on them, and its callback route refuses every request."""
    listens: ClassVar[bool] = False
    """Its reports arrive at a server each worker process runs for it (`listener`), such as an SMTP
    server taking bounces, and its callback route refuses every request."""
    session_window_seconds: ClassVar[float | None] = None
    """Free-form messages go only within this long after the end user last wrote (WhatsApp's 24-hour
    customer-service window); outside it only `window_free_types` (templates). The core refuses the
    others when they are sent. None: no window."""
    window_free_types: ClassVar[frozenset[str]] = frozenset()
    """Message types that may go outside `session_window_seconds`."""
    send_fields: ClassVar[frozenset[str]] = frozenset()
    """Fields of a send request besides `message` that it takes (`subject`, `html`): the core renders
    their placeholders and hands them over in the content under the same names; a send giving one that
    is not here is refused."""
    onboarding: ClassVar[bool] = False
    """The upstream can hand a company its account through a sign-up flow (WhatsApp's Embedded Signup):
    the company's admin signs up on the upstream's page (`onboarding_url`), which sends the browser back
    to the platform, and `complete_onboarding` turns what came back into the new channel's credentials.
    The company never handles those credentials itself."""
    reviews_templates: ClassVar[bool] = False
    """The upstream reviews message templates before they may be sent (WhatsApp: Meta). The core submits
    a company's template in the upstream's form (`template_model`) with `submit_template`; the verdict
    comes later as a `TemplateEvent` in a callback. Templates of other applications are approved by the
    operator."""
    template_model: ClassVar[type[RequestModel] | None] = None
    """The upstream's template form (the MMP API's WhatsappFormCreateTemplateMessage)."""
    manages_agents: ClassVar[bool] = False
    """The platform runs the company's upstream account for it (an RBM agent): it creates and edits the
    account from a profile (`agent_model`), reports its verification and launch state, invites test
    devices, checks which phones it reaches (one, or in batches of `reachability_batch` at most
    `reachability_rate`), and requests its verification (`verification_model`) and launch
    (`launch_forms`). The API serves these under `/api/v1/{agent_path}/...`."""
    agent_path: ClassVar[str] = ""
    agent_model: ClassVar[type[RequestModel] | None] = None
    """The account's profile (the `agent` of CreateOrEditChannelRequest)."""
    verification_model: ClassVar[type[RequestModel] | None] = None
    """What a request for verification carries (the brand's and the partner's contacts)."""
    launch_forms: ClassVar[Sequence[LaunchForm]] = ()
    reachability_batch: ClassVar[int] = 0
    """How many phones one `reachable` call may check."""
    reachability_rate: ClassVar[RateLimit | None] = None
    """The upstream's quota of `reachable` calls (RBM's users:batchGet: 600 per minute per project)."""
    refreshes_credentials: ClassVar[bool] = False
    """The channel's credentials hold tokens that expire (Zalo's OAuth: an access token for 25 hours, and
    a refresh token that works once). A call the upstream refuses for that raises `ProviderError` with
    `stale_credentials`; the core then renews them with `refresh_credentials`, stores what comes back and
    calls again. Renewals of one channel never run at once, in any number of processes: the one that
    comes second finds the credentials already renewed and uses them."""
    asks_consent: ClassVar[bool] = False
    """A business asks end users for their consent through the upstream, by phone (Zalo: permission to
    call the user): `request_consent` asks it, `consent_status` reads it. The API serves them under
    `/api/v1/{consent_path}/{accountId}/consent`."""
    consent_path: ClassVar[str] = ""
    consent_request_model: ClassVar[type[RequestModel] | None] = None
    """What asking carries: a `phone` field, and the upstream's own (Zalo's ZaloRequestConsentRequest:
    phone, callType, reasonCode)."""
    consent_answer_model: ClassVar[type[ConsentAnswer]] = ConsentAnswer
    """The answer to asking (Zalo: ZaloRequestConsentResponse)."""
    consent_status_model: ClassVar[type[ConsentAnswer]] = ConsentAnswer
    """The answer to reading it (Zalo: ZaloCheckConsentResponse)."""

    # ---- accept time (pure, fast: called inside the API's request) ----

    @abstractmethod
    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        """Raise ValueError("<MMP field>: <what is wrong>") when `content` cannot be sent as it is.

        `content.type` is one of `message_types` already; this checks the upstream's own limits.
        """

    # ---- channel set-up ----

    def needs_setup(self, *, sandbox: bool) -> bool:
        """True when the upstream must learn something (our callback URL) before the channel can work."""
        return False

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        """Tell the upstream where the channel's callbacks go. Idempotent: re-run at every start.

        Raises `ProviderError`: retryable when trying again later can help, final otherwise.
        """
        return None

    # ---- onboarding (only providers that declare `onboarding`) ----

    def onboarding_url(self, ctx: ProviderContext, *, state: str, redirect_url: str) -> str:
        """Where the company's admin goes to sign up: the upstream's sign-up page, which sends the browser
        back to `redirect_url` with `state` unchanged and what the flow produced in the query. In sandbox
        mode it is its simulator's page, which answers the GET with that redirect at once (an admin who
        signs up straight away).

        `state` is the core's opaque token; the page must hand it back as it is. Raises ValueError (its
        text says what is missing) when the operator has not configured what the flow needs.
        """
        raise NotImplementedError(f"{self.title} accounts are not handed out through a sign-up flow")

    async def complete_onboarding(
        self, ctx: ProviderContext, answer: Mapping[str, str], *, redirect_url: str
    ) -> dict[str, Any]:
        """Finish a sign-up from `answer`, the query the flow sent the browser back with (`state` aside):
        the server-to-server steps the upstream wants (exchanging a code, registering the account), then
        the new channel's credentials (wire names of `credentials_model`). `redirect_url` is the one the
        sign-up was started with (OAuth's code exchange must name it again).

        Called once per sign-up, before the channel exists: the core creates it (and runs its set-up)
        only when this returns. Raises ValueError("<field of the answer>: ...") for an answer that cannot
        be used (a sign-up that was cancelled, a field missing), `ProviderError` when the upstream refused
        a step (final) or could not be reached (retryable). Never logs what it returns: it holds secrets.
        """
        raise NotImplementedError(f"{self.title} accounts are not handed out through a sign-up flow")

    # ---- templates the upstream reviews (only providers that declare `reviews_templates`) ----

    async def submit_template(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], template: Mapping[str, Any]
    ) -> TemplateReview:
        """Submit `template` (wire names of `template_model`) for the upstream's review; returns the
        upstream's id of it and its review so far. Idempotent: submitted again after an answer was lost,
        the same template is the one the upstream has already (its id and status), never a refusal.
        Raises ValueError("<field>: ...") for a template the upstream would refuse as it is,
        `ProviderError` when it refused (final) or could not be reached (retryable)."""
        raise NotImplementedError(f"{self.title} does not review templates")

    async def edit_template(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        template_id: str,
        template: Mapping[str, Any],
    ) -> TemplateReview:
        """Replace the upstream's template `template_id` with `template` and have it reviewed again;
        returns its id (a new one when the upstream cannot edit what changed, e.g. a template's name: the
        new template is submitted and the old one deleted) and its review so far. Raises as
        `submit_template`."""
        raise NotImplementedError(f"{self.title} does not review templates")

    async def delete_template(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        template_id: str,
        template: Mapping[str, Any],
    ) -> None:
        """Delete the upstream's template `template_id` (`template`: its form as submitted). One the
        upstream no longer has counts as deleted. Raises `ProviderError` when the upstream refused (final)
        or could not be reached (retryable)."""
        raise NotImplementedError(f"{self.title} does not review templates")

    def template_variables(self, template: Mapping[str, Any]) -> list[str]:
        """The names of the parameters a send of `template` (wire names of `template_model`) must give,
        in order (WhatsApp: "1", "2", ... for positional placeholders, or their names)."""
        raise NotImplementedError(f"{self.title} does not review templates")

    def template_message(
        self, template: Mapping[str, Any], params: Mapping[str, str], *, template_id: str
    ) -> dict[str, Any]:
        """The MMP message object (api.md §3) that sends the approved `template` with `params` (every
        variable of `template_variables`, by name): WhatsApp's `fb_whatsapp_template`, Zalo's
        `zalo_zns_template`. `template_id` is the upstream's id of it (`TemplateReview.template_id`), for
        upstreams that send templates by id. ValueError ("params.<name>: ...") for a parameter the
        upstream would refuse."""
        raise NotImplementedError(f"{self.title} does not review templates")

    # ---- agent management (only providers that declare `manages_agents`) ----
    #
    # Each raises ValueError("<field>: ...") for input the upstream would refuse and `ProviderError` when
    # the upstream refused (final) or could not be reached (retryable). `credentials` are the channel's.

    async def create_agent(self, ctx: ProviderContext, profile: Mapping[str, Any]) -> dict[str, Any]:
        """Create the account upstream from `profile` (wire names of `agent_model`) and return the new
        channel's credentials (wire names of `credentials_model`). Never logs what it returns."""
        raise NotImplementedError(f"{self.title} accounts are not managed by the platform")

    async def edit_agent(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], profile: Mapping[str, Any]
    ) -> None:
        """Change the account's profile upstream (what the upstream lets change, e.g. not the region)."""
        raise NotImplementedError(f"{self.title} accounts are not managed by the platform")

    async def agent_state(self, ctx: ProviderContext, credentials: Mapping[str, Any]) -> AgentState:
        """The account's verification and launch state, asked of the upstream now."""
        raise NotImplementedError(f"{self.title} accounts are not managed by the platform")

    async def add_testers(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phones: Sequence[str]
    ) -> list[TesterResult]:
        """Invite `phones` (E.164 digits) as test devices, which an account not launched can reach;
        one result per phone, in order."""
        raise NotImplementedError(f"{self.title} accounts are not managed by the platform")

    async def capabilities(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phone: str
    ) -> PhoneCapabilities:
        """Whether the account reaches `phone` now, and with which features."""
        raise NotImplementedError(f"{self.title} accounts are not managed by the platform")

    async def reachable(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phones: Sequence[str]
    ) -> frozenset[str]:
        """Which of `phones` (at most `reachability_batch`, E.164 digits) the account reaches. The caller
        keeps to `reachability_rate`; a `ProviderError` with code RATE_LIMITED is retryable."""
        raise NotImplementedError(f"{self.title} accounts are not managed by the platform")

    async def request_verification(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], request: Mapping[str, Any]
    ) -> AgentState:
        """Ask the upstream to verify the brand (`request`: wire names of `verification_model`)."""
        raise NotImplementedError(f"{self.title} accounts are not managed by the platform")

    async def request_launch(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], form: str, request: Mapping[str, Any]
    ) -> AgentState:
        """Ask for a launch with the `launch_forms` entry whose path is `form` (`request`: wire names of
        its model). The upstream's verdicts come later, as `ChannelEvent`s in callbacks."""
        raise NotImplementedError(f"{self.title} accounts are not managed by the platform")

    # ---- credentials that expire (only providers that declare `refreshes_credentials`) ----

    async def refresh_credentials(
        self, ctx: ProviderContext, credentials: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The channel's credentials with renewed tokens (wire names of `credentials_model`, every field).

        The core calls it with the channel locked, so never twice at once for one channel, and stores the
        result before anything else uses it: a refresh token that works once is never spent twice.
        Raises `ProviderError`: retryable when the upstream could not be reached, final when it refused
        the refresh token (the company must connect the channel again). Never logs what it returns.
        """
        raise NotImplementedError(f"{self.title} credentials do not expire")

    # ---- consent (only providers that declare `asks_consent`) ----

    async def request_consent(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phone: str, request: Mapping[str, Any]
    ) -> Consent:
        """Ask the end user at `phone` (E.164 digits, normalised by the core) for consent (`request`: wire
        names of `consent_request_model`, its `phone` left out); returns its state once asked (REQUESTED,
        or GRANTED when it already was). Raises ValueError("<field>: ...") for a request the upstream
        would refuse as it is, and `ProviderError` when it refused (final, e.g. too many requests to that
        user) or could not be reached (retryable)."""
        raise NotImplementedError(f"{self.title} does not ask for consent")

    async def consent_status(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phone: str
    ) -> Consent:
        """The end user's consent at `phone` (E.164 digits), asked of the upstream now."""
        raise NotImplementedError(f"{self.title} does not ask for consent")

    # ---- sending ----

    @abstractmethod
    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        """The upstream requests that send `outgoing` (one channel's messages), e.g. grouped broadcasts.

        Every key of `outgoing` is in exactly one unit. `link` is the channel's (only for `connected`
        providers). Raises only for credentials that cannot work (KeyError, ValueError): the core then
        fails those messages with a cause.
        """

    def link(self, ctx: ProviderContext, credentials: Mapping[str, Any], sink: EventSink) -> Link:
        """The channel's `Link` (not yet running); only `connected` providers have one."""
        raise NotImplementedError(f"{self.title} is not reached over kept connections")

    def listener(self, ctx: ProviderContext, sink: ChannelSink) -> Link:
        """The server a worker process runs for a provider that `listens` (not yet running): it keeps
        listening until stopped, and acknowledges what arrives only once the sink has stored it."""
        raise NotImplementedError(f"{self.title} reports to no server of ours")

    # ---- callbacks ----

    @abstractmethod
    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        """True when `request` provably comes from the upstream (signature over the raw body, ...)."""

    def callback_account(self, request: CallbackRequest) -> Sequence[str] | None:
        """For a provider that `routes_by_account`: the values of the identity fields (`Credentials.
        identity_fields`, in order) of the account `request` is for (Apple: its `Destination-Id`, the
        business), read before anything is verified; None when it names none."""
        raise NotImplementedError(f"{self.title} callbacks come to each channel's own URL")

    def challenge(
        self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]
    ) -> CallbackReply:
        """Answer a GET verification handshake (only called when `verifies_with_get`).

        Raises `CallbackUnverified` for a handshake with a wrong token.
        """
        raise CallbackUnverified(f"{self.title} has no GET handshake")

    def acknowledge(self, request: CallbackRequest, outcome: str) -> CallbackReply | None:
        """The answer to a callback once it is stored (`outcome` as the route reports it, e.g. "applied"
        or "duplicate"), for upstreams that expect one in their protocol (MM7's DeliveryReportRsp);
        None: the route's own JSON acknowledgement."""
        return None

    def readable_body(self, request: CallbackRequest) -> bytes:
        """The body of a verified callback as `parse` reads it and the core keeps it (and parses it again
        when it replays a stored event): the raw body, or, for an upstream that compresses its callbacks
        (Apple's `Content-Encoding: gzip`), the body inflated. Raises `CallbackRejected` for a body that
        cannot be read (a corrupt stream, or one inflating past a sane bound)."""
        return request.body

    @abstractmethod
    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        """The neutral events in a verified callback body. Raises `CallbackRejected` for a body that is
        not the upstream's protocol or names nothing OpenMMP handles."""

    # ---- sandbox ----

    @abstractmethod
    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        """The provider's simulator: an ASGI app speaking the upstream's protocol (mounted at `/{name}`).

        `config.options[name]` holds its own knobs; they include the fields of `options_model`, which the
        platform fills with its operator settings, so that simulator and platform agree (e.g. on a
        callback secret). `http` sends the simulator's callbacks.
        """

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        """Make a sandbox end user write to the channel through its simulator (a signed callback follows).

        Raises ValueError("<field>: ...") for a user the channel cannot receive from, `ProviderError` when
        the simulator cannot be reached.
        """
        raise ValueError(f"accountId: {self.title} channels do not receive messages")
