"""The company's channels: the list, a new channel (its credentials form made from the application's own
credentials model), editing, the webhook secret, and a test send whose status the page follows live.

Every change goes through the service the API's endpoint calls, with the same settings (sandbox mode,
private webhooks, allowed upstream hosts), so the portal can do nothing the API would refuse.
"""

from __future__ import annotations

import re
import secrets
import types
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from fastapi import Form, Query, Request
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from starlette.responses import Response

from openmmp.api_keys.auth import Subject
from openmmp.channels.credentials import validate_credentials
from openmmp.channels.schemas import CreateChannelRequest, EditChannelRequest, SetWebhookRequest
from openmmp.channels.service import channels
from openmmp.companies import repository as companies_repository
from openmmp.deps import KeyringDep, SettingsDep
from openmmp.errors import AppError, Invalid, NotFound, validation_items
from openmmp.kit.db import SessionDep, after_commit
from openmmp.kit.schemas import PageNumber
from openmmp.kit.time import now_ms
from openmmp.messages.schemas import ResponseStatusMessage, SendMessageBroadcast
from openmmp.messages.service import messages
from openmmp.models import Channel
from openmmp.models.channel import ChannelStatus, WebhookStatus
from openmmp.models.message import MessageStatus
from openmmp.portal.web import (
    PORTAL,
    CompanyEditorDep,
    CompanyViewerDep,
    Viewer,
    is_htmx,
    portal_router,
    redirect,
    render,
)
from openmmp.providers.applications import Application, channel_type
from openmmp.providers.base import Addressing, Provider
from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings
from openmmp.webhooks.guard import webhooks_allow_private

router = portal_router("/channels")

PAGE_SIZE = 50
CREDENTIAL_PREFIX = "credentials."
_SECRET_NAMES = re.compile(r"token|secret|password", re.IGNORECASE)
_LONG_TEXT = 4096  # longer than any token: a file's text (an RBM key file), typed into a text area
_POLL_FOR_MS = 10 * 60_000
"""A test message still moving after this long is left alone (a sandbox number ending in 7 is never
read): the page stops asking and says so."""
_STOPPED_POLLING = 286  # htmx stops polling when a poll's answer has this status


@dataclass(frozen=True)
class CredentialField:
    """One input of the credentials form, read off the application's credentials model."""

    name: str  # the wire name (`authToken`), as the API takes it and as its errors name it
    label: str
    kind: Literal["text", "password", "number", "checkbox", "select", "textarea"]
    required: bool
    hint: str | None
    options: tuple[str, ...] = ()
    default: str | None = None
    max_length: int | None = None
    minimum: Any = None  # a number bound of the model (`ge`, `le`)
    maximum: Any = None

    @property
    def secret(self) -> bool:
        return self.kind == "password"


_CHOICES = ("select", "checkbox", "number")


def _label(wire: str) -> str:
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", wire).lower()
    return words[:1].upper() + words[1:]


def _inner_type(annotation: Any) -> Any:
    """`X` of `X | None` (an optional credential is the same input, left empty)."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _field(python_name: str, info: FieldInfo) -> CredentialField:
    wire = info.alias or python_name
    inner = _inner_type(info.annotation)
    kind: Literal["text", "password", "number", "checkbox", "select", "textarea"] = "text"
    options: tuple[str, ...] = ()
    max_length = minimum = maximum = None
    for rule in info.metadata:
        if isinstance(rule, annotated_types.MaxLen):
            max_length = rule.max_length
        elif isinstance(rule, annotated_types.Ge):
            minimum = rule.ge
        elif isinstance(rule, annotated_types.Le):
            maximum = rule.le
    if get_origin(inner) is Literal:
        kind, options = "select", tuple(str(value) for value in get_args(inner))
    elif isinstance(inner, type) and issubclass(inner, Enum):
        kind, options = "select", tuple(str(member.value) for member in inner)
    elif inner is bool:
        kind = "checkbox"
    elif inner in (int, float):
        kind = "number"
    elif max_length is not None and max_length > _LONG_TEXT:
        kind = "textarea"
    elif _SECRET_NAMES.search(python_name):
        kind = "password"
    default = None
    if not info.is_required() and info.default is not None:
        default = str(info.default.value if isinstance(info.default, Enum) else info.default)
    return CredentialField(
        name=wire,
        label=_label(wire),
        kind=kind,
        required=info.is_required(),
        hint=info.description,
        options=options,
        default=default,
        max_length=max_length,
        minimum=minimum,
        maximum=maximum,
    )


def credential_fields(application: Application) -> list[CredentialField]:
    """The inputs of `application`'s credentials, in the model's order."""
    model = REGISTRY.credentials_model(application)
    return [_field(name, info) for name, info in model.model_fields.items()]


def sandbox_fill(application: Application) -> dict[str, str]:
    """The application's sandbox credentials (which its simulator takes), for a new channel of one's own.

    The sandbox's demo channel holds those very credentials, and an upstream account belongs to one
    channel: the account's own name (the last identity field, after any naming its server, such as an
    SMSC's host and port) gets a random ending, which the simulators take as well.
    """
    model = REGISTRY.credentials_model(application)
    filled = {name: str(value) for name, value in REGISTRY.sandbox_credentials(application).items()}
    if model.identity_fields:
        python_name = model.identity_fields[-1]
        wire = model.model_fields[python_name].alias or python_name
        value = filled.get(wire, "")
        if value.isdigit():
            filled[wire] = str(1_000_000 + secrets.randbelow(2**31 - 1_000_000))
        else:
            filled[wire] = f"{value}-{secrets.token_hex(3)}"
    return filled


def _application(value: str | None) -> Application | None:
    if value is None or value == "":
        return None
    try:
        return Application(int(value))
    except ValueError:
        raise Invalid("not an application this platform knows", name="applicationId") from None


def _choices() -> list[tuple[int, str]]:
    return [(int(p.application), f"{p.title} ({int(p.application)})") for p in REGISTRY.providers]


def _status_name(status: int) -> str:
    try:
        return ChannelStatus(status).name
    except ValueError:
        return str(status)


def _channel_view(channel: Channel) -> dict[str, Any]:
    provider = REGISTRY.for_application(channel.application_id)
    try:
        webhook = WebhookStatus(channel.webhook_status).name
    except ValueError:
        webhook = str(channel.webhook_status)
    return {
        "public_id": channel.public_id,
        "name": channel.name,
        "application_id": channel.application_id,
        "application": provider.title if provider else f"Application {channel.application_id}",
        "type": channel_type(channel.application_id).name,
        "status": _status_name(channel.status),
        "cause": channel.status_cause,
        "webhook_url": channel.webhook_url,
        "webhook_status": webhook,
        "settings": channel.settings,
        "created_at": channel.created_at,
    }


@router.get("")
async def list_channels(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, page: PageNumber = 1
) -> Response:
    total, found = await channels.list(
        session, viewer.subject, application_id=None, page=page, size=PAGE_SIZE
    )
    return render(
        request,
        "channels.html",
        channels=[_channel_view(c) for c in found],
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
    )


def _new_form(
    request: Request,
    viewer: Viewer,
    settings: Settings,
    application: Application | None,
    *,
    values: dict[str, Any],
    credentials: dict[str, Any],
    errors: list[tuple[str, str]] | None = None,
    status_code: int = 200,
) -> Response:
    model = REGISTRY.credentials_model(application) if application is not None else None
    return render(
        request,
        "channels_new.html",
        status_code=status_code,
        application=application,
        provider=REGISTRY.of(application) if application is not None else None,
        choices=_choices(),
        fields=credential_fields(application) if application is not None else [],
        credentials=credentials,
        values=values,
        errors=errors or [],
        sandbox=settings.sandbox,
        # Only the operator's side may bind an identity the operator hands out; sandbox mode binds any.
        partner_only=bool(
            model and model.operator_assigned and not settings.sandbox and not viewer.is_operator
        ),
    )


@router.get("/new")
async def new_channel(
    request: Request,
    viewer: CompanyViewerDep,
    settings: SettingsDep,
    application_id: Annotated[str | None, Query(alias="applicationId")] = None,
    fill: str | None = None,
) -> Response:
    application = _application(application_id)
    credentials: dict[str, Any] = {}
    if application is not None and fill == "sandbox" and settings.sandbox:
        credentials = sandbox_fill(application)
    company = viewer.company
    values = {"defaultCountry": company.country if company and company.country else ""}
    return _new_form(request, viewer, settings, application, values=values, credentials=credentials)


def _given_credentials(form: Any, fields: list[CredentialField]) -> dict[str, Any]:
    """The credential inputs filled in (an empty one is not given), by wire name."""
    given: dict[str, Any] = {}
    for field in fields:
        value = form.get(CREDENTIAL_PREFIX + field.name)
        if isinstance(value, str) and value.strip() != "":
            given[field.name] = value if field.secret or field.kind == "textarea" else value.strip()
    return given


async def _creator(
    session: SessionDep, viewer: Viewer, application: Application, body: CreateChannelRequest
) -> tuple[Subject, CreateChannelRequest]:
    """Who creates the channel: the company, as its own API key would; for an identity the operator
    hands out (Viber BM service ids), the operator acts as its partner company with `companyId`, as a
    partner key does on the API (which refuses it for any company the partner did not onboard)."""
    subject = viewer.subject
    if not (viewer.is_operator and REGISTRY.credentials_model(application).operator_assigned):
        return subject, body
    own = await companies_repository.get(session, viewer.user.company_id)
    if own.id == subject.company_id:
        return subject, body
    partner = Subject(company_id=own.id, company_public_id=own.public_id, company_type=own.type, api_key_id=0)
    return partner, body.model_copy(update={"company_id": subject.company_public_id})


@router.post("")
async def create_channel(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    form = await request.form()
    application = _application(str(form.get("applicationId") or ""))
    if application is None:
        raise Invalid("choose the channel's application", name="applicationId")
    fields = credential_fields(application)
    credentials = _given_credentials(form, fields)
    values = {name: str(form.get(name) or "").strip() for name in ("name", "webhookUrl", "defaultCountry")}
    raw: dict[str, Any] = {
        "name": values["name"],
        "applicationId": int(application),
        "credentials": credentials,
    }
    if values["webhookUrl"]:
        raw["webhookUrl"] = values["webhookUrl"]
    if values["defaultCountry"]:
        raw["settings"] = {"defaultCountry": values["defaultCountry"]}
    errors: list[tuple[str, str]] = []
    try:
        body = CreateChannelRequest.model_validate(raw)
        # Checked here too so that every faulty field is named on the form, which is shown again.
        validate_credentials(application, body.credentials)
    except ValidationError as exc:
        errors = [(item.name, item.message) for item in validation_items(exc.errors())]
    except AppError as exc:
        errors = [(item.name, item.message) for item in exc.items]
    if errors:
        # Only choices come back: a typed credential may be a secret whatever its name (a service
        # account's private key, an SMTP URL with its password), and a page is no place for one.
        kept = {name: value for name, value in credentials.items() if _is_choice(fields, name)}
        return _new_form(
            request,
            viewer,
            settings,
            application,
            values=values,
            credentials=kept,
            errors=errors,
            status_code=400,
        )
    subject, body = await _creator(session, viewer, application, body)
    saved = await channels.create(
        session,
        keyring,
        subject,
        request=body,
        allow_private_webhooks=webhooks_allow_private(settings),
        sandbox=settings.sandbox,
        allowed_hosts=settings.providers.allowed_host_list,
    )
    url = f"{PORTAL}/channels/{saved.channel.public_id}"
    if saved.new_webhook_secret is None:
        return redirect(request, url, notice=f"Channel {saved.channel.name} created")
    return await _channel_page(
        request,
        session,
        viewer,
        saved.channel,
        sandbox=settings.sandbox,
        secret=saved.new_webhook_secret,
        notice=f"Channel {saved.channel.name} created",
        status_code=201,
    )


def _is_choice(fields: list[CredentialField], name: str) -> bool:
    return any(field.name == name and field.kind in _CHOICES for field in fields)


def _provider(channel: Channel) -> Provider | None:
    return REGISTRY.for_application(channel.application_id)


async def _channel_page(
    request: Request,
    session: SessionDep,
    viewer: Viewer,
    channel: Channel,
    *,
    sandbox: bool,
    secret: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
    message_id: str | None = None,
) -> Response:
    provider = _provider(channel)
    test = None
    if message_id:
        test = await _test_view(session, viewer, channel, message_id)
    return render(
        request,
        "channels_detail.html",
        status_code=status_code,
        channel=_channel_view(channel),
        addressing=provider.addressing.value if provider else Addressing.PHONE.value,
        sandbox=sandbox,
        secret=secret,
        test=test,
        done=notice,  # `render` takes `notice` from the URL only: this page answers a POST
    )


@router.get("/{public_id}")
async def channel_details(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    settings: SettingsDep,
    public_id: str,
    message: str | None = None,
) -> Response:
    channel = await channels.get(session, viewer.subject, public_id=public_id)
    return await _channel_page(
        request, session, viewer, channel, sandbox=settings.sandbox, message_id=message
    )


@router.get("/{public_id}/setup")
async def setup_status(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, public_id: str
) -> Response:
    """The channel's status, followed while its set-up with the upstream runs (REQUEST, PROCESSING)."""
    channel = await channels.get(session, viewer.subject, public_id=public_id)
    return render(request, "channels_setup.html", channel=_channel_view(channel))


@router.post("/{public_id}")
async def edit_channel(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    public_id: str,
    name: Annotated[str, Form()] = "",
    webhook_url: Annotated[str, Form(alias="webhookUrl")] = "",
    default_country: Annotated[str, Form(alias="defaultCountry")] = "",
) -> Response:
    channel = await channels.get(session, viewer.subject, public_id=public_id)
    raw: dict[str, Any] = {"name": name.strip()}
    # Only a changed URL is sent: setting it re-activates the endpoint, which a rename should not do.
    if webhook_url.strip() and webhook_url.strip() != channel.webhook_url:
        raw["webhookUrl"] = webhook_url.strip()
    country = default_country.strip()
    if country and country.upper() != channel.settings.get("defaultCountry"):
        raw["settings"] = {"defaultCountry": country}
    body = EditChannelRequest.model_validate(raw)
    saved = await channels.edit(
        session,
        keyring,
        viewer.subject,
        public_id=channel.public_id,
        request=body,
        allow_private_webhooks=webhooks_allow_private(settings),
        sandbox=settings.sandbox,
        allowed_hosts=settings.providers.allowed_host_list,
    )
    if saved.new_webhook_secret is None:
        return redirect(request, f"{PORTAL}/channels/{channel.public_id}", notice="Channel saved")
    return await _channel_page(
        request,
        session,
        viewer,
        saved.channel,
        sandbox=settings.sandbox,
        secret=saved.new_webhook_secret,
        notice="Channel saved",
    )


@router.post("/{public_id}/webhook-secret")
async def set_webhook_secret(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    public_id: str,
    secret: Annotated[str, Form()] = "",
) -> Response:
    """A secret of the company's choosing, or (none given) a new one: shown on the answer, this once."""
    channel = await channels.get(session, viewer.subject, public_id=public_id)
    if channel.webhook_url is None:
        raise Invalid("set the channel's webhook URL first", name="webhookUrl")
    chosen = secret.strip() or None
    body = SetWebhookRequest.model_validate(
        {"url": channel.webhook_url, "secret": chosen, "rotateSecret": chosen is None}
    )
    channel, in_force = await channels.set_webhook(
        session,
        keyring,
        viewer.subject,
        public_id=channel.public_id,
        url=body.url,
        secret=body.secret,
        rotate_secret=body.rotate_secret,
        allow_private_webhooks=webhooks_allow_private(settings),
    )
    notice = "Webhook secret set" if chosen else "New webhook secret made"
    return await _channel_page(
        request, session, viewer, channel, sandbox=settings.sandbox, secret=in_force, notice=notice
    )


@router.post("/{public_id}/test")
async def send_test(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    public_id: str,
    text: Annotated[str, Form()] = "",
    phone: Annotated[str, Form()] = "",
    to: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
) -> Response:
    """One text message, as Broadcast Message takes it; the answer follows its status."""
    channel = await channels.get(session, viewer.subject, public_id=public_id)
    if not text.strip():
        raise Invalid("write the message's text", name="text")
    raw: dict[str, Any] = {"message": {"type": "text", "message": text}}
    for key, value in (("phone", phone), ("to", to), ("email", email), ("subject", subject)):
        if value.strip():
            raw[key] = value.strip()
    SendMessageBroadcast.model_validate(raw)  # the body's own checks, as the API makes them first
    # Sent in the request's own transaction, as the API's batch broadcast sends each of its items: the
    # portal's POST already holds the write connection (its session lookup), on SQLite the process's
    # only one, so Broadcast Message's batcher, which writes in a transaction of its own, would wait for
    # it until the pool gave up.
    [result] = await messages.broadcast_batch(
        session, keyring, viewer.subject, account_id=channel.public_id, items=[raw]
    )
    if "errors" in result:
        first = result["errors"][0]
        raise Invalid(first["message"], name=first["name"])
    after_commit(request, request.app.state.wake_workers)
    message_id = str(result["messageId"])
    if not is_htmx(request):
        return redirect(
            request, f"{PORTAL}/channels/{channel.public_id}?message={message_id}", notice="Test message sent"
        )
    test = await _test_view(session, viewer, channel, message_id)
    return render(request, "channels_test.html", channel=_channel_view(channel), test=test)


def _settled(found: ResponseStatusMessage, provider: Provider | None) -> bool:
    """The message's status will not change any more (or not soon enough to keep asking)."""
    status = found.status
    if status in (MessageStatus.READ, MessageStatus.FAIL):
        return True
    if provider is not None and status == MessageStatus.DELIVERED and not provider.reports_read:
        return True
    if provider is not None and status == MessageStatus.SENT and not provider.reports_delivery:
        return True
    return now_ms() - found.created_date > _POLL_FOR_MS


async def _test_view(
    session: SessionDep, viewer: Viewer, channel: Channel, message_id: str
) -> dict[str, Any]:
    found = await messages.status(session, viewer.subject, message_id=message_id, client_message_id=None)
    if found.public_id != channel.public_id:
        raise NotFound("No such message on this channel", name="messageId")
    try:
        name = MessageStatus(found.status).name
    except ValueError:
        name = str(found.status)
    return {
        "message_id": found.message_id,
        "status": name,
        "settled": _settled(found, _provider(channel)),
        "error": found.error,
        "history": [(MessageStatus(h.status).name, h.timestamp) for h in found.history],
        "to": found.phone or found.email or "",
    }


@router.get("/{public_id}/messages/{message_id}/status")
async def follow_test(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, public_id: str, message_id: str
) -> Response:
    """The test message's status: the inside of `#test-status` (and its details, out of band)."""
    channel = await channels.get(session, viewer.subject, public_id=public_id)
    test = await _test_view(session, viewer, channel, message_id)
    status_code = _STOPPED_POLLING if test["settled"] and is_htmx(request) else 200
    return render(
        request, "channels_status.html", status_code=status_code, channel=_channel_view(channel), test=test
    )
