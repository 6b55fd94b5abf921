"""RBM agents run by the platform: Business Communications (the agent's life) and the RBM API's management
calls (test devices, capabilities, reachability), with the request models the MMP API takes for them.

Business Communications (`management_base_url`, default `https://businesscommunications.googleapis.com`)
holds the agent under a brand (providers.md §4):

- `POST /v1/brands {displayName}` and `POST /v1/brands/{brand}/agents {displayName,
  rcsBusinessMessagingAgent}` make it; `GET`/`PATCH .../agents/{agent}?updateMask=` read and change it.
  Google keeps the hosting region for good, the use case once a launch was asked for, and takes a new
  billing category only before then: `edit` names such a change as a ValueError before it asks, and a
  refusal all the same (a launch requested meanwhile) is Google's own final error;
- `POST .../agents/{agent}:requestVerification {agentVerificationContact}` and `GET .../verification`;
- `POST .../agents/{agent}:requestLaunch {agentLaunch}` for the first launch, `PATCH .../agents/{agent}/
  launch` (updateLaunch, every region wanted in its `launchDetails`) for each one after; `GET .../launch`
  reports each region's `launchState`; `GET /v1/regions` names the regions a launch can ask for.

Each launch form turns into `agentLaunch.rcsBusinessMessaging`: a `questionnaire` and a `launchDetails`
key per region. `LaunchChannelRequest` names its regions as `GET /v1/regions` does; the Indonesia and
India forms name carriers, each the carrier-managed region `INDONESIA_REGIONS` / `INDIA_REGIONS` gives,
and carry what those carriers review besides RBM's questionnaire (company and tax registration, the
person in charge; TRAI DLT entity, GSTIN, registered address). RBM's questionnaire has no fields for
them, so they go in its free text: a paragraph after `agentAccessInstructions`, which the carriers'
reviewers read. The carrier regions' ids are the ones the simulator serves; Google's partner accounts
list theirs at `GET /v1/regions`, and every request is checked against that list first, so an id this
platform maps a carrier to that RBM does not offer is a ValueError naming it, not a launch half made.

The RBM API (the provider's base URL) invites test devices (`POST /v1/phones/{+E164}/testers?agentId=`)
and reports one phone's capabilities (`GET /v1/phones/{+E164}/capabilities?requestId=&agentId=`; 404:
not reachable over RCS). How Google answers a phone invited before is not documented: a 409
ALREADY_EXISTS (what the simulator answers) and a 200 whose `inviteStatus` is ACCEPTED are both EXISTED.
`users:batchGet` needs a regional host (`regional_base_url`, default Asia's), at most `BATCH_GET_MAX`
numbers a call and 600 calls a minute per project; its `reachableUsers` are the numbers on carriers where
the agent is launched.

Every call is authorised with the acting service account's bearer token (`credentials.acting_account`):
the RBM scope for the RBM API, `auth.MANAGEMENT_SCOPE` for Business Communications; a 401 gets one fresh
token. In sandbox mode the simulator plays every host at the provider's base URL.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import quote

import orjson
from pydantic import AfterValidator, Field, ValidationError

from openmmp.kit.http import HttpClient, HttpResponse, HttpUnreachable
from openmmp.kit.schemas import RequestModel
from openmmp.kit.validators import Email, HttpUrl, Phone
from openmmp.providers.base import (
    AgentState,
    LaunchForm,
    PhoneCapabilities,
    ProviderContext,
    ProviderError,
    TesterResult,
)
from openmmp.providers.rbm import auth
from openmmp.providers.rbm.credentials import ServiceAccount, acting_account
from openmmp.providers.rbm.errors import management_error
from openmmp.providers.upstream import bad_response, transport_error

DEFAULT_MANAGEMENT_URL = "https://businesscommunications.googleapis.com"
DEFAULT_REGIONAL_URL = "https://asia-rcsbusinessmessaging.googleapis.com"
BATCH_GET_MAX = 10_000
"""Most numbers one users:batchGet takes."""
REGION_PREFIX = "/v1/regions/"
"""How Business Communications spells a region's name (`/v1/regions/{id}`)."""
INDONESIA_REGIONS = {
    "telkomsel": "telkomsel-indonesia",
    "indosat": "indosat-indonesia",
    "xl": "xl-indonesia",
}
"""The carrier-managed region of each Indonesian carrier the Indonesia form launches with."""
INDIA_REGIONS = {"jio": "jio-india", "airtel": "airtel-india", "vi": "vi-india"}
"""The carrier-managed region of each Indian carrier the India form launches with."""

_REGION_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LABEL_MAX = 25
_TEXT_MAX = 1000
M = TypeVar("M", bound=RequestModel)


# ---- the request models (MMP API schemas) ---------------------------------------------------------------


def _https(value: str) -> str:
    if not value.lower().startswith("https://"):
        raise ValueError("must be an https:// URL")
    return value


def _region_id(value: str) -> str:
    short = value.strip().removeprefix(REGION_PREFIX)
    if not _REGION_ID.match(short):
        raise ValueError("not a region id as GET /v1/regions names them, e.g. /v1/regions/asia-pacific")
    return short


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


HttpsUrl = Annotated[HttpUrl, AfterValidator(_https)]
RegionId = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_region_id)]
Label = Annotated[str, Field(min_length=1, max_length=_LABEL_MAX)]
Text = Annotated[str, Field(min_length=1, max_length=_TEXT_MAX)]
BillingCategory = Literal["CONVERSATIONAL", "BASIC_MESSAGE", "SINGLE_MESSAGE"]
AgentUseCase = Literal["OTP", "TRANSACTIONAL", "PROMOTIONAL", "MULTI_USE"]
HostingRegion = Literal["NORTH_AMERICA", "EUROPE", "ASIA_PACIFIC"]


class RcsAgentPhone(RequestModel):
    number: Phone = Field(description="A phone number users can call the brand on (E.164)")
    label: Label | None = Field(default=None, description='What it is, e.g. "Customer service"')


class RcsAgentEmail(RequestModel):
    address: Email = Field(description="An e-mail address users can write to")
    label: Label | None = Field(default=None, description='What it is, e.g. "Support"')


class RcsAgentWebsite(RequestModel):
    uri: HttpsUrl = Field(description="A website of the brand")
    label: Label | None = Field(default=None, description='What it is, e.g. "Home page"')


class RcsAgentProfile(RequestModel):
    """An RBM agent's profile: what users see of the brand on their device, and how RBM bills and hosts
    it. Hosting region is permanent; the use case cannot change, and the billing category can change only
    until the agent's launch is requested."""

    display_name: str = Field(min_length=1, max_length=100, description="The agent's name on users' devices")
    description: str = Field(min_length=1, max_length=100, description="What the agent is for, shown with it")
    logo_uri: HttpsUrl = Field(description="The brand's logo (224×224 px, square; https)")
    hero_uri: HttpsUrl = Field(description="The banner image of the agent's info page (1440×448 px; https)")
    color: str = Field(
        pattern=r"^#[0-9A-Fa-f]{6}$",
        description="The brand's colour as #RRGGBB (it needs 4.5:1 contrast against white)",
    )
    phone_numbers: list[RcsAgentPhone] = Field(
        min_length=1, max_length=3, description="The brand's phone numbers (at least one)"
    )
    emails: list[RcsAgentEmail] = Field(
        default_factory=list, max_length=3, description="Its e-mail addresses"
    )
    websites: list[RcsAgentWebsite] = Field(default_factory=list, max_length=3, description="Its websites")
    privacy_uri: HttpsUrl = Field(description="The brand's privacy policy")
    terms_conditions_uri: HttpsUrl = Field(description="The brand's terms and conditions")
    billing_category: BillingCategory = Field(
        description="How RBM bills the agent's messages; changes only until its launch is requested"
    )
    agent_use_case: AgentUseCase = Field(
        description="What the agent sends (OTP, TRANSACTIONAL, PROMOTIONAL or MULTI_USE); fixed once its "
        "launch is requested"
    )
    hosting_region: HostingRegion = Field(
        description="Where RBM hosts the agent (NORTH_AMERICA, EUROPE or ASIA_PACIFIC); permanent"
    )

    def upstream(self) -> dict[str, Any]:
        """The Business Communications agent (`displayName`, `rcsBusinessMessagingAgent`)."""
        return {
            "displayName": self.display_name,
            "rcsBusinessMessagingAgent": {
                "description": self.description,
                "logoUri": self.logo_uri,
                "heroUri": self.hero_uri,
                "color": self.color.upper(),
                "phoneNumbers": [
                    _labelled({"phoneNumber": {"number": f"+{p.number}"}}, p.label)
                    for p in self.phone_numbers
                ],
                "emails": [_labelled({"address": e.address}, e.label) for e in self.emails],
                "websites": [_labelled({"uri": w.uri}, w.label) for w in self.websites],
                "privacy": {"uri": self.privacy_uri, "label": "Privacy policy"},
                "termsConditions": {"uri": self.terms_conditions_uri, "label": "Terms and conditions"},
                "billingConfig": {"billingCategory": self.billing_category},
                "agentUseCase": self.agent_use_case,
                "hostingRegion": self.hosting_region,
            },
        }


def _labelled(entry: dict[str, Any], label: str | None) -> dict[str, Any]:
    return {**entry, "label": label} if label else entry


class RcsVerificationRequest(RequestModel):
    """Who vouches for the agent: Google asks the brand's contact to confirm that the partner (this
    platform's operator) may run an agent in the brand's name."""

    partner_name: str = Field(min_length=1, max_length=100, description="The partner running the agent")
    partner_email_address: Email = Field(description="The partner's contact for Google")
    brand_contact_name: str = Field(
        min_length=1, max_length=100, description="Who at the brand confirms the agent"
    )
    brand_contact_email_address: Email = Field(
        description="Their e-mail address, on the brand's own domain (Google writes to it)"
    )
    brand_website_url: HttpUrl = Field(description="The brand's public website")


class RcsLaunchContact(RequestModel):
    name: str = Field(min_length=1, max_length=100, description="The brand's point of contact")
    title: str = Field(min_length=1, max_length=100, description="Their role")
    email: Email = Field(description="Their e-mail address")


class RcsLaunchQuestionnaire(RequestModel):
    """RBM's launch questionnaire, which Google and the carriers review."""

    contacts: list[RcsLaunchContact] = Field(
        min_length=1, max_length=10, description="Who reviewers contact at the brand"
    )
    optin_description: Text = Field(description="How users agree to get the agent's messages")
    trigger_description: Text = Field(description="What makes the agent write to a user")
    interactions_description: Text = Field(description="What the agent and users exchange")
    optout_description: Text = Field(description="How users stop the messages (e.g. replying STOP)")
    agent_access_instructions: Text = Field(description="How reviewers reach and try the agent")
    video_uris: list[HttpsUrl] | None = Field(
        default=None, max_length=10, description="Videos of the agent in use, for review"
    )
    screenshot_uris: list[HttpsUrl] | None = Field(
        default=None, max_length=10, description="Screenshots of the agent in use, for review"
    )

    def upstream(self, extra: str = "") -> dict[str, Any]:
        """The questionnaire as RBM takes it, with `extra` (details RBM has no field for) after the access
        instructions."""
        found = self.model_dump(by_alias=True, exclude_none=True)
        if extra:
            found["agentAccessInstructions"] = f"{self.agent_access_instructions}\n\n{extra}"
        return found


class RcsLaunchRequest(RequestModel):
    """What every launch form has: RBM's questionnaire, and the regions the form asks for."""

    regions_field: ClassVar[str] = "regions"
    """The form's field that names the regions (for a ValueError about one RBM does not offer)."""

    questionnaire: RcsLaunchQuestionnaire = Field(
        description="RBM's launch questionnaire, which Google and the carriers review"
    )

    def launch_regions(self) -> list[str]:
        """The region ids asked for."""
        raise NotImplementedError

    def upstream_questionnaire(self) -> dict[str, Any]:
        """RBM's questionnaire, with what the form's reviewers need besides."""
        return self.questionnaire.upstream()


class LaunchChannelRequest(RcsLaunchRequest):
    """A launch in regions as Business Communications names them (`GET /v1/regions`): Google reviews
    its own regions, each carrier its carrier-managed ones."""

    regions: Annotated[list[RegionId], AfterValidator(_unique)] = Field(
        min_length=1,
        max_length=50,
        description="Regions to launch in, as GET /v1/regions names them (`/v1/regions/{id}` or the id)",
    )

    def launch_regions(self) -> list[str]:
        return list(self.regions)


IndonesianCarrier = Literal["telkomsel", "indosat", "xl"]
IndianCarrier = Literal["jio", "airtel", "vi"]


class LaunchChannelRequestIndonesia(RcsLaunchRequest):
    """A launch on Indonesian carriers (their carrier-managed regions), with the company's registration
    that they review besides RBM's questionnaire: its NIB, its NPWP and a person in charge."""

    regions_field: ClassVar[str] = "carriers"

    carriers: Annotated[list[IndonesianCarrier], AfterValidator(_unique)] = Field(
        min_length=1, description="The carriers to launch on: telkomsel, indosat, xl"
    )
    company_registration_number: str = Field(
        pattern=r"^\d{13}$", description="The company's NIB (Nomor Induk Berusaha, 13 digits)"
    )
    tax_id: str = Field(
        pattern=r"^\d{15,16}$", description="The company's NPWP (tax number, 15 or 16 digits, no punctuation)"
    )
    pic_name: str = Field(min_length=1, max_length=100, description="The person in charge (PIC) for carriers")
    pic_phone: Phone = Field(description="The PIC's phone number (E.164)")

    def launch_regions(self) -> list[str]:
        return [INDONESIA_REGIONS[carrier] for carrier in self.carriers]

    def upstream_questionnaire(self) -> dict[str, Any]:
        extra = (
            f"Indonesian carrier registration ({', '.join(self.carriers)}): NIB "
            f"{self.company_registration_number}; NPWP {self.tax_id}; person in charge {self.pic_name}, "
            f"+{self.pic_phone}."
        )
        return self.questionnaire.upstream(extra)


class LaunchChannelRequestIndia(RcsLaunchRequest):
    """A launch on Indian carriers (their carrier-managed regions), with what Indian commercial messaging
    registers besides RBM's questionnaire: the brand's TRAI DLT principal entity, GSTIN and registered
    address."""

    regions_field: ClassVar[str] = "carriers"

    carriers: Annotated[list[IndianCarrier], AfterValidator(_unique)] = Field(
        min_length=1, description="The carriers to launch on: jio, airtel, vi"
    )
    dlt_principal_entity_id: str = Field(
        pattern=r"^\d{19}$", description="The brand's TRAI DLT principal entity id (19 digits)"
    )
    gstin: str = Field(
        pattern=r"^\d{2}[A-Z]{5}\d{4}[A-Z][1-9A-Z]Z[0-9A-Z]$",
        description="The brand's GSTIN (15 characters, capital letters)",
    )
    brand_registered_address: str = Field(
        min_length=1, max_length=300, description="The brand's registered address"
    )

    def launch_regions(self) -> list[str]:
        return [INDIA_REGIONS[carrier] for carrier in self.carriers]

    def upstream_questionnaire(self) -> dict[str, Any]:
        extra = (
            f"Indian carrier registration ({', '.join(self.carriers)}): TRAI DLT principal entity id "
            f"{self.dlt_principal_entity_id}; GSTIN {self.gstin}; registered address: "
            f"{self.brand_registered_address}."
        )
        return self.questionnaire.upstream(extra)


_FORMS: tuple[tuple[str, type[RcsLaunchRequest], str], ...] = (
    ("", LaunchChannelRequest, "Launch the agent in regions Business Communications names."),
    (
        "indonesia",
        LaunchChannelRequestIndonesia,
        "Launch the agent on Indonesian carriers, with the company registration they review.",
    ),
    (
        "india",
        LaunchChannelRequestIndia,
        "Launch the agent on Indian carriers, with the DLT and GST registration they review.",
    ),
)
LAUNCH_FORMS = tuple(LaunchForm(path, model, title) for path, model, title in _FORMS)


def validated(model: type[M], data: Mapping[str, Any]) -> M:
    """`data` (wire names) as `model`; ValueError("<field>: <problem>") for the first thing wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        raise ValueError(f"{where or 'body'}: {first['msg']}") from None


# ---- the agent's state ------------------------------------------------------------------------------------


def short_region(name: str) -> str:
    """A region's id without Business Communications' `/v1/regions/` prefix."""
    return name.removeprefix(REGION_PREFIX)


def agent_state_of(verification: str, launches: Mapping[str, str]) -> AgentState:
    """The channel status for a verification state and each region's launch state (upstream words without
    their `VERIFICATION_STATE_` / `LAUNCH_STATE_` prefixes, regions by id).

    Launched anywhere is LAUNCH (the agent reaches everybody there); suspended everywhere is SUSPEND;
    rejected with nothing launched or pending is REJECT; anything else is ACCEPT, reaching test devices
    only, with the cause saying what is pending.
    """

    def where(*states: str) -> str:
        return ", ".join(sorted(region for region, state in launches.items() if state in states))

    launched, pending, leaving = where("LAUNCHED"), where("PENDING"), where("PENDING_UNLAUNCH")
    reviews = [
        *([f"launch pending review in {pending}"] if pending else []),
        *([f"unlaunch pending review in {leaving}"] if leaving else []),
    ]
    if launched:
        cause = "; ".join([f"launched in {launched}", *reviews])
        return AgentState("LAUNCH", cause, verification, dict(launches))
    if launches and all(state == "SUSPENDED" for state in launches.values()):
        return AgentState("SUSPEND", f"suspended in {where('SUSPENDED')}", verification, dict(launches))
    rejected = where("REJECTED")
    if rejected and not reviews:
        return AgentState("REJECT", f"launch rejected in {rejected}", verification, dict(launches))
    if pending:
        reviews[0] = f"not launched: {reviews[0]}"
    cause = "; ".join(reviews) or "not launched: reaches its test devices only"
    return AgentState("ACCEPT", cause, verification, dict(launches))


# ---- the calls --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hosts:
    """Where each API is: Business Communications, the RBM API, and RBM's regional host (batchGet)."""

    management: str
    messaging: str
    regional: str

    @classmethod
    def of(cls, ctx: ProviderContext) -> Hosts:
        if ctx.sandbox:
            base = ctx.base_url.rstrip("/")
            return cls(base, base, base)
        return cls(
            management=str(ctx.options.get("management_base_url") or DEFAULT_MANAGEMENT_URL).rstrip("/"),
            messaging=ctx.base_url.rstrip("/"),
            regional=str(ctx.options.get("regional_base_url") or DEFAULT_REGIONAL_URL).rstrip("/"),
        )


class _Api:
    """JSON calls authorised as one service account: a token per scope, one fresh token after a 401."""

    def __init__(self, http: HttpClient, account: ServiceAccount, token_uri: str) -> None:
        self._http = http
        self._account = account
        self._token_uri = token_uri

    async def call(
        self, method: str, url: str, *, scope: str, body: Mapping[str, Any] | None = None
    ) -> HttpResponse:
        """The upstream's answer, whatever its status; `ProviderError` when it could not be asked."""
        key = auth.token_key(self._account, self._token_uri, scope)
        token = await self._token(key, scope)
        response = await self._send(method, url, token, body)
        if response.status_code == 401:
            auth.TOKENS.forget(key, token)
            token = await self._token(key, scope)
            response = await self._send(method, url, token, body)
        return response

    async def json(
        self, method: str, url: str, *, scope: str, doing: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON object a successful call answers; `ProviderError` for any other answer."""
        return answer_of(await self.call(method, url, scope=scope, body=body), doing)

    async def _token(self, key: auth.TokenKey, scope: str) -> auth.AccessToken:
        async def fetch() -> auth.AccessToken:
            return await auth.fetch_token(self._http, self._account, self._token_uri, scope=scope)

        return await auth.TOKENS.get(key, fetch)

    async def _send(
        self, method: str, url: str, token: auth.AccessToken, body: Mapping[str, Any] | None
    ) -> HttpResponse:
        headers = {"authorization": f"Bearer {token.value}", "content-type": "application/json"}
        try:
            return await self._http.request(
                method, url, content=None if body is None else orjson.dumps(body), headers=headers
            )
        except HttpUnreachable as exc:
            raise transport_error(exc) from exc


def answer_of(response: HttpResponse, doing: str) -> dict[str, Any]:
    """The JSON object of a successful answer; the mapped `ProviderError` otherwise."""
    if not response.ok:
        raise management_error(response, doing)
    try:
        body = response.json()
    except ValueError as exc:
        raise bad_response(f"Google answered with something that is not JSON ({doing})") from exc
    if not isinstance(body, dict):
        raise bad_response(f"Google answered with JSON that is not an object ({doing})")
    return body


class AgentManager:
    """The management calls for one channel's agent (or, with no credentials, for making one), as the
    service account that acts for it."""

    def __init__(self, ctx: ProviderContext, credentials: Mapping[str, Any]) -> None:
        account = acting_account(ctx, credentials)
        self._api = _Api(ctx.http, account, auth.token_endpoint(ctx, account))
        self._hosts = Hosts.of(ctx)
        self._sandbox = ctx.sandbox
        self._agent_id = str(credentials.get("agentId") or "")
        self._brand_id = str(credentials.get("brandId") or "")

    # ---- Business Communications ----

    @property
    def _agent(self) -> str:
        """The agent's resource name, `brands/{brandId}/agents/{agentId}`."""
        if not self._brand_id:
            raise ValueError(
                "credentials.brandId: required to manage the agent (the Business Communications brand it "
                "belongs to)"
            )
        return f"brands/{quote(self._brand_id, safe='')}/agents/{quote(self._agent_id, safe='')}"

    async def _agent_call(
        self, method: str, suffix: str, doing: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A call on the agent's resource (`suffix` after its name); an agent Google does not know is a
        final error that says so."""
        agent = self._agent
        url = f"{self._hosts.management}/v1/{agent}{suffix}"
        response = await self._api.call(method, url, scope=auth.MANAGEMENT_SCOPE, body=body)
        if response.status_code == 404:
            forgot = " or the sandbox's simulator restarted and forgot it" if self._sandbox else ""
            raise ProviderError(
                "RBM_AGENT_NOT_FOUND",
                f"Business Communications knows no agent {agent}: it was made under another partner "
                f"account{forgot} ({doing})",
                retryable=False,
            )
        return answer_of(response, doing)

    async def create(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        """Make a brand and its agent from `profile`; the new channel's credentials (agentId, brandId).

        Not idempotent: Google makes a new brand and agent each time (agents cannot be deleted).
        """
        agent = validated(RcsAgentProfile, profile).upstream()
        brand = await self._api.json(
            "POST",
            f"{self._hosts.management}/v1/brands",
            scope=auth.MANAGEMENT_SCOPE,
            doing="creating the brand",
            body={"displayName": agent["displayName"]},
        )
        brand_name = _name(brand, "brands/", "creating the brand")
        made = await self._api.json(
            "POST",
            f"{self._hosts.management}/v1/{brand_name}/agents",
            scope=auth.MANAGEMENT_SCOPE,
            doing="creating the agent",
            body=agent,
        )
        agent_name = _name(made, f"{brand_name}/agents/", "creating the agent")
        return {
            "agentId": agent_name.rsplit("/", 1)[-1],
            "brandId": brand_name.removeprefix("brands/"),
        }

    async def edit(self, profile: Mapping[str, Any]) -> None:
        """Change the agent's profile to `profile`, refusing what Google keeps (see the module)."""
        wanted = validated(RcsAgentProfile, profile).upstream()
        current = await self._agent_call("GET", "", "reading the agent")
        launch_requested = any(state != "UNLAUNCHED" for state in (await self._launches()).values())
        had = current.get("rcsBusinessMessagingAgent") or {}
        new = wanted["rcsBusinessMessagingAgent"]
        if had.get("hostingRegion") not in (None, new["hostingRegion"]):
            raise ValueError(f"hostingRegion: permanent: the agent is hosted in {had['hostingRegion']}")
        fixed = []
        if launch_requested:
            if had.get("agentUseCase") not in (None, new["agentUseCase"]):
                raise ValueError(
                    f"agentUseCase: fixed once the agent's launch was requested (it is {had['agentUseCase']})"
                )
            billing = (had.get("billingConfig") or {}).get("billingCategory")
            if billing not in (None, new["billingConfig"]["billingCategory"]):
                raise ValueError(
                    f"billingCategory: changes only until the agent's launch is requested (it is {billing})"
                )
            fixed = ["agentUseCase", "billingConfig"]
        paths = ["displayName"] + [
            f"rcsBusinessMessagingAgent.{field}" for field in new if field not in ("hostingRegion", *fixed)
        ]
        await self._agent_call("PATCH", f"?updateMask={','.join(paths)}", "editing the agent", wanted)

    async def state(self) -> AgentState:
        """The agent's verification and per-region launch state, asked now."""
        verification = await self._part("/verification", "reading the agent's verification")
        if verification is None:
            # Never asked for, or no agent at all: the agent itself says which.
            await self._agent_call("GET", "", "reading the agent")
            verification = {}
        state = str(verification.get("verificationState") or "VERIFICATION_STATE_UNVERIFIED")
        return agent_state_of(state.removeprefix("VERIFICATION_STATE_"), await self._launches())

    async def _part(self, suffix: str, doing: str) -> dict[str, Any] | None:
        """One of the agent's parts (its verification, its launch); None when Google has none of it."""
        url = f"{self._hosts.management}/v1/{self._agent}{suffix}"
        response = await self._api.call("GET", url, scope=auth.MANAGEMENT_SCOPE)
        return None if response.status_code == 404 else answer_of(response, doing)

    async def _launches(self) -> dict[str, str]:
        """Each region's launch state (region id → state without its prefix); none for an agent never
        launched. Callers learn whether the agent exists from the calls around this one."""
        launch = await self._part("/launch", "reading the agent's launch") or {}
        details = (launch.get("rcsBusinessMessaging") or {}).get("launchDetails") or {}
        return {
            short_region(str(region)): str((detail or {}).get("launchState") or "").removeprefix(
                "LAUNCH_STATE_"
            )
            for region, detail in details.items()
        }

    async def request_verification(self, request: Mapping[str, Any]) -> AgentState:
        contact = validated(RcsVerificationRequest, request).model_dump(by_alias=True)
        await self._agent_call(
            "POST",
            ":requestVerification",
            "requesting the agent's verification",
            {"agentVerificationContact": contact},
        )
        return await self.state()

    async def request_launch(self, form: str, request: Mapping[str, Any]) -> AgentState:
        """Ask for a launch with the form at `form`; the first launch is requestLaunch, later ones add
        their regions to it (updateLaunch), as Google wants."""
        model = next((model for path, model, _title in _FORMS if path == form), None)
        if model is None:
            known = ", ".join(repr(path) for path, _model, _title in _FORMS)
            raise ValueError(f"form: no launch form {form!r} (there are {known})")
        launch = validated(model, request)
        wanted = launch.launch_regions()
        offered = await self._regions()
        missing = [region for region in wanted if region not in offered]
        if missing:
            raise ValueError(
                f"{launch.regions_field}: RBM offers no region {', '.join(missing)} (it offers "
                f"{', '.join(sorted(offered))})"
            )
        current = await self._launches()
        details: dict[str, dict[str, Any]] = {
            f"{REGION_PREFIX}{region}": {} for region in (*current, *wanted)
        }
        rbm = {"questionnaire": launch.upstream_questionnaire(), "launchDetails": details}
        if current:
            mask = "rcsBusinessMessaging.launchDetails,rcsBusinessMessaging.questionnaire"
            body = {"name": f"{self._agent}/launch", "rcsBusinessMessaging": rbm}
            await self._agent_call("PATCH", f"/launch?updateMask={mask}", "updating the agent's launch", body)
        else:
            body = {"agentLaunch": {"name": f"{self._agent}/launch", "rcsBusinessMessaging": rbm}}
            await self._agent_call("POST", ":requestLaunch", "requesting the agent's launch", body)
        return await self.state()

    async def _regions(self) -> set[str]:
        """The ids of the regions RBM offers."""
        answer = await self._api.json(
            "GET",
            f"{self._hosts.management}/v1/regions",
            scope=auth.MANAGEMENT_SCOPE,
            doing="listing RBM's regions",
        )
        regions = answer.get("regions") or []
        return {short_region(str(r.get("name"))) for r in regions if isinstance(r, dict) and r.get("name")}

    # ---- the RBM API ----

    def _phone_url(self, phone: str, path: str, query: str = "") -> str:
        agent = quote(self._agent_id, safe="")
        return f"{self._hosts.messaging}/v1/phones/+{phone}/{path}?{query}agentId={agent}"

    async def add_testers(self, phones: Sequence[str]) -> list[TesterResult]:
        """Invite each phone; a refusal about one phone is its FAIL, only trouble reaching Google raises."""
        results = []
        for phone in phones:
            digits = phone.removeprefix("+")
            if not _is_e164(digits):
                results.append(TesterResult(phone, "FAIL", "not an E.164 phone number"))
                continue
            response = await self._api.call(
                "POST", self._phone_url(digits, "testers"), scope=auth.SCOPE, body={}
            )
            results.append(_tester_result(phone, response))
        return results

    async def capabilities(self, phone: str) -> PhoneCapabilities:
        digits = phone.removeprefix("+")
        if not _is_e164(digits):
            raise ValueError("phone: not an E.164 phone number")
        url = self._phone_url(digits, "capabilities", f"requestId={uuid.uuid4()}&")
        response = await self._api.call("GET", url, scope=auth.SCOPE)
        if response.status_code == 404:
            return PhoneCapabilities(digits, enabled=False)
        answer = answer_of(response, "checking the phone's capabilities")
        features = answer.get("features") or []
        return PhoneCapabilities(digits, enabled=True, features=tuple(str(f) for f in features))

    async def reachable(self, phones: Sequence[str]) -> frozenset[str]:
        if len(phones) > BATCH_GET_MAX:
            raise ValueError(f"phones: at most {BATCH_GET_MAX} a call ({len(phones)} given)")
        users = []
        for n, phone in enumerate(phones):
            digits = phone.removeprefix("+")
            if not _is_e164(digits):
                raise ValueError(f"phones[{n}]: not an E.164 phone number")
            users.append(f"+{digits}")
        if not users:
            return frozenset()
        answer = await self._api.json(
            "POST",
            f"{self._hosts.regional}/v1/users:batchGet",
            scope=auth.SCOPE,
            doing="checking which phones the agent reaches",
            body={"users": users, "agentId": self._agent_id},
        )
        found = answer.get("reachableUsers") or []
        return frozenset(user.removeprefix("+") for user in found if isinstance(user, str))


def _is_e164(digits: str) -> bool:
    return digits.isascii() and digits.isdigit() and 8 <= len(digits) <= 15


def _name(answer: Mapping[str, Any], prefix: str, doing: str) -> str:
    """The `name` Google gave what it made, which must start with `prefix`."""
    name = answer.get("name")
    if not isinstance(name, str) or not name.startswith(prefix) or len(name) <= len(prefix):
        raise bad_response(f"Google answered without the name of what it made ({doing})")
    return name


def _tester_result(phone: str, response: HttpResponse) -> TesterResult:
    if response.status_code == 409:
        return TesterResult(phone, "EXISTED")
    if response.ok:
        try:
            status = response.json().get("inviteStatus")
        except (ValueError, AttributeError):
            status = None
        # A tester who took an earlier invitation is one already, however Google answers the repeat.
        return TesterResult(phone, "EXISTED" if status == "ACCEPTED" else "INVITED")
    if response.status_code == 404:
        return TesterResult(phone, "FAIL", "not reachable over RCS: a test device must have RCS turned on")
    error = management_error(response, "inviting a tester")
    if error.retryable and not error.rate_limited:
        raise error
    if error.rate_limited:
        # RBM's tester quota (20 invitations a day, 200 in all per agent): waiting minutes does not help.
        return TesterResult(
            phone, "FAIL", "the agent's quota of tester invitations (20 a day, 200 in all) is spent"
        )
    return TesterResult(phone, "FAIL", error.message)
