"""The agent management routes (api.md §4.7: RCS), one set per provider that `manages_agents`.

Each provider brings its own models (the agent's profile, the verification request, its launch forms), so
the routes are made per provider, under `/api/v1/{provider.agent_path}`; their bodies are those models, so
the OpenAPI document shows each field. A route is written against the static shape of its body and given
the provider's model (`_body`) before FastAPI reads its signature; annotations are evaluated when the
routes are made (no postponed annotations in this module).
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, create_model

from openmmp.api_keys.auth import CompanyKey
from openmmp.channels.agents import AgentChannel, Agents, AgentSpec, upstream
from openmmp.channels.endpoints import channel_saved
from openmmp.channels.schemas import (
    ChannelSaved,
    ChannelSettings,
    ChannelTestRequest,
    ChannelTestResponse,
    ChannelTestResult,
    CheckBulkPhonesRequest,
    CheckPhoneCapabilitiesResponse,
    CommonGetChannelStatusResponse,
)
from openmmp.deps import KeyringDep, SettingsDep
from openmmp.errors import responses
from openmmp.kit.db import request_database
from openmmp.kit.schemas import AccountId, RequestModel
from openmmp.kit.validators import HttpUrl
from openmmp.models import Channel
from openmmp.providers.base import AgentState, Provider, ProviderContext
from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings
from openmmp.tasks.schemas import BackgroundTaskResponse, task_response
from openmmp.webhooks.guard import webhooks_allow_private

_UPSTREAM = (
    " The platform asks the upstream on the company's behalf: 400 naming `upstream` when it refuses (in its "
    "words), 502 when it cannot be reached."
)


Route = TypeVar("Route", bound=Callable[..., Any])


class AgentChannelRequest(RequestModel):
    """The shape of CreateOrEditChannelRequest; each provider's version types `agent` with its profile."""

    name: str = Field(min_length=1, max_length=200, description="The channel's name")
    agent: RequestModel
    webhook_url: HttpUrl | None = None
    settings: ChannelSettings = ChannelSettings()


def _body(model: type[BaseModel]) -> Callable[[Route], Route]:
    """Make the route take `model` as its body (a provider's model, known only when the routes are made)."""

    def apply(route: Route) -> Route:
        route.__annotations__["body"] = model
        return route

    return apply


def _spec(body: AgentChannelRequest) -> AgentSpec:
    return AgentSpec(
        name=body.name,
        profile=body.agent.model_dump(by_alias=True, exclude_none=True),
        webhook_url=body.webhook_url,
        settings=body.settings,
    )


def _status(channel: Channel, state: AgentState) -> CommonGetChannelStatusResponse:
    return CommonGetChannelStatusResponse(
        public_id=channel.public_id,
        application_id=channel.application_id,
        status=channel.status,
        cause=channel.status_cause,
        verification=state.verification,
        launches=dict(state.launches),
    )


def _tag(provider: Provider) -> str:
    return f"{provider.application.name} agents"


def agent_router(provider: Provider) -> APIRouter:
    """The routes of `provider`'s agent management."""
    assert provider.agent_model is not None
    assert provider.verification_model is not None
    agents = Agents(provider)
    kind = provider.application.name
    router = APIRouter(prefix=f"/{provider.agent_path}", tags=[_tag(provider)])
    create_or_edit = create_model(
        "CreateOrEditChannelRequest",
        __base__=AgentChannelRequest,
        __doc__=f"An {kind} official account: the channel and the {provider.title} account behind it.",
        agent=(provider.agent_model, Field(description=f"The {provider.title} account's profile")),
    )

    def context(request: Request, settings: Settings) -> ProviderContext:
        return settings.provider_context(provider, request.app.state.http)

    async def load(
        request: Request, keyring: KeyringDep, subject: CompanyKey, account_id: str
    ) -> AgentChannel:
        return await agents.load(request_database(request), keyring, subject, account_id)

    @router.post(
        "",
        summary=f"Create an {kind} official account",
        description=f"Creates the {provider.title} account from `agent` and the channel that sends with it. "
        "The new account is not launched: it reaches its test devices only (status 6 ACCEPT) until a "
        "launch is approved." + _UPSTREAM,
        status_code=201,
        response_model=ChannelSaved,
        responses=responses(400, 401, 403, 413, 502),
    )
    @_body(create_or_edit)
    async def create_agent(
        body: AgentChannelRequest,
        subject: CompanyKey,
        request: Request,
        keyring: KeyringDep,
        settings: SettingsDep,
    ) -> ChannelSaved:
        saved = await agents.create(
            request_database(request),
            keyring,
            subject,
            context(request, settings),
            _spec(body),
            allow_private_webhooks=webhooks_allow_private(settings),
        )
        return channel_saved(saved)

    @router.post(
        "/{accountId}",
        summary=f"Edit an {kind} official account",
        description="Replaces the account's profile upstream (what the upstream lets change: e.g. not its "
        "hosting region) and the channel's name, settings and webhook URL." + _UPSTREAM,
        response_model=ChannelSaved,
        responses=responses(400, 401, 403, 404, 413, 502),
    )
    @_body(create_or_edit)
    async def edit_agent(
        account_id: AccountId,
        body: AgentChannelRequest,
        subject: CompanyKey,
        request: Request,
        keyring: KeyringDep,
        settings: SettingsDep,
    ) -> ChannelSaved:
        saved = await agents.edit(
            request_database(request),
            keyring,
            subject,
            context(request, settings),
            account_id,
            _spec(body),
            allow_private_webhooks=webhooks_allow_private(settings),
        )
        return channel_saved(saved)

    @router.get(
        "/{accountId}/status",
        summary=f"Get {kind} channel status",
        description="The account's verification and launch state per region, asked of the upstream now; "
        "the channel's status follows it (a change is also sent as a `type: 4` webhook)." + _UPSTREAM,
        response_model=CommonGetChannelStatusResponse,
        responses=responses(400, 401, 403, 404, 502),
    )
    async def agent_status(
        account_id: AccountId,
        subject: CompanyKey,
        request: Request,
        keyring: KeyringDep,
        settings: SettingsDep,
    ) -> CommonGetChannelStatusResponse:
        found = await load(request, keyring, subject, account_id)
        channel, state = await agents.state(request_database(request), found, context(request, settings))
        return _status(channel, state)

    @router.post(
        "/{accountId}/test",
        summary="Add test numbers",
        description="Invites the phones as test devices (the owner accepts on the phone); an account not "
        "launched reaches these only. One result per phone." + _UPSTREAM,
        response_model=ChannelTestResponse,
        responses=responses(400, 401, 403, 404, 413, 502),
    )
    async def add_testers(
        account_id: AccountId,
        body: ChannelTestRequest,
        subject: CompanyKey,
        request: Request,
        keyring: KeyringDep,
        settings: SettingsDep,
    ) -> ChannelTestResponse:
        found = await load(request, keyring, subject, account_id)
        results = await agents.add_testers(found, context(request, settings), body.phones)
        return ChannelTestResponse(
            public_id=found.channel.public_id,
            phones=[
                ChannelTestResult(phone=r.phone, status=r.status, cause=r.cause or None) for r in results
            ],
        )

    @router.get(
        "/{accountId}/capabilities",
        summary="Check capabilities of one phone",
        description="Whether the channel reaches `phone` now, and what its messaging app supports."
        + _UPSTREAM,
        response_model=CheckPhoneCapabilitiesResponse,
        responses=responses(400, 401, 403, 404, 502),
    )
    async def phone_capabilities(
        account_id: AccountId,
        phone: Annotated[
            str, Query(min_length=1, max_length=32, description="E.164 digits, e.g. 85512345678")
        ],
        subject: CompanyKey,
        request: Request,
        keyring: KeyringDep,
        settings: SettingsDep,
    ) -> CheckPhoneCapabilitiesResponse:
        found = await load(request, keyring, subject, account_id)
        found_caps = await agents.capabilities(found, context(request, settings), phone)
        return CheckPhoneCapabilitiesResponse(
            phone=found_caps.phone, is_rcs_enabled=found_caps.enabled, features=list(found_caps.features)
        )

    rate = provider.reachability_rate
    quota = f"at most {rate.requests} batches per {rate.window_seconds:g} s" if rate else "no quota"

    @router.post(
        "/{accountId}/capabilities",
        summary="Check bulk phones",
        description="Checks the phones in the background, in batches of "
        f"{provider.reachability_batch:,} within the upstream's quota ({quota}), and answers at "
        "once with the task: follow it at `GET /api/v1/background-task/{id}`; its result file is a CSV "
        "`phone,isRcsEnabled,error` with a row per phone in the order given (a phone that is not a valid "
        "number has its reason in `error`).",
        status_code=202,
        response_model=BackgroundTaskResponse,
        responses=responses(400, 401, 403, 404, 413),
    )
    async def check_bulk_phones(
        account_id: AccountId,
        body: CheckBulkPhonesRequest,
        subject: CompanyKey,
        request: Request,
        keyring: KeyringDep,
    ) -> BackgroundTaskResponse:
        found = await load(request, keyring, subject, account_id)
        task = await agents.check_phones(request_database(request), found, body.phones)
        request.app.state.wake_workers()
        return task_response(task)

    _request_route(
        router,
        agents,
        path="/verification",
        model=provider.verification_model,
        summary="Request verification",
        description="Asks the upstream to verify the brand behind the account (a launch needs it).",
        ask=lambda ctx, found, body: agents.provider.request_verification(ctx, found.credentials, body),
    )
    for form in provider.launch_forms:
        _request_route(
            router,
            agents,
            path=f"/launch{'/' + form.path if form.path else ''}",
            model=form.model,
            summary=f"Request launch{' (' + form.path.title() + ')' if form.path else ''}",
            description=form.title + " The verdicts come later, per region, as `type: 4` webhooks (the "
            "channel becomes 3 LAUNCH once launched in a region).",
            ask=_launch(agents.provider, form.path),
        )
    return router


Ask = Callable[[ProviderContext, AgentChannel, dict[str, Any]], Awaitable[AgentState]]
"""A request to the upstream about the agent (verification, a launch form), answered with its state."""


def _launch(provider: Provider, form: str) -> Ask:
    def ask(ctx: ProviderContext, found: AgentChannel, body: dict[str, Any]) -> Awaitable[AgentState]:
        return provider.request_launch(ctx, found.credentials, form, body)

    return ask


def _request_route(
    router: APIRouter,
    agents: Agents,
    *,
    path: str,
    model: type[BaseModel],
    summary: str,
    description: str,
    ask: Ask,
) -> None:
    """A route that asks the upstream something about the agent, answering with its state (recorded)."""

    @router.post(
        f"/{{accountId}}{path}",
        summary=summary,
        description=description + _UPSTREAM,
        response_model=CommonGetChannelStatusResponse,
        responses=responses(400, 401, 403, 404, 413, 502),
        name=f"request_{path.strip('/').replace('/', '_')}",
    )
    @_body(model)
    async def request_route(
        account_id: AccountId,
        body: RequestModel,
        subject: CompanyKey,
        request: Request,
        keyring: KeyringDep,
        settings: SettingsDep,
    ) -> CommonGetChannelStatusResponse:
        db = request_database(request)
        found = await agents.load(db, keyring, subject, account_id)
        ctx = settings.provider_context(agents.provider, request.app.state.http)
        state = await upstream(ask(ctx, found, body.model_dump(by_alias=True, exclude_none=True)))
        return _status(await agents.record(db, found.channel, state), state)


_MANAGED = [provider for provider in REGISTRY.providers if provider.manages_agents]
routers = [agent_router(provider) for provider in _MANAGED]
AGENT_TAGS = [
    {
        "name": _tag(provider),
        "description": f"{provider.application.name} official accounts the platform runs on "
        f"{provider.title}: create and edit, test devices, phone checks, verification and launch",
    }
    for provider in _MANAGED
]
