"""Rules for message templates (api.md §4.5): forms checked per application, review, approval, use.

A template is one of two kinds, decided by its application's provider (never by its name):

- the upstream reviews templates itself (`Provider.reviews_templates`, WhatsApp's Meta): the template is
  the upstream's own form (`template_model`), submitted at once with its channel's credentials (an update
  edits the upstream's copy, a delete deletes it); the verdict, and any change the upstream makes to the
  template (Meta's new category), arrive later as a `TemplateEvent` in one of the company's callbacks
  (`apply_event`);
- any other: CreateFormTemplateMessage, messages with `{{name}}` placeholders, each checked as a send on
  the application would check it; the operator approves or rejects it (a partner key, or the CLI).

A new or updated template waits in REQUEST (unless the upstream answers that it holds it approved
already: a submission repeated after a lost answer); every change of status is a `type: 3` webhook to its
channel (api.md §5.3). A template without a channel has no webhook endpoint: its changes are read with GET.

Upstream calls never run inside a database transaction (on SQLite a write transaction holds the database's
only write lock): `save` checks the form in a short read session, asks the upstream, and writes in a short
write session. A verdict can overtake that write; `save` looks for one among the callbacks recorded since
it asked (by event id, not by any node's clock) and applies it, so it is not lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.channels.agents import upstream
from openmmp.channels.renewal import Renewal
from openmmp.channels.service import channels, open_credentials
from openmmp.errors import Conflict, ErrorCode, ErrorItem, Invalid, NotFound
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.schemas import RequestModel
from openmmp.kit.time import now_ms
from openmmp.messages.capabilities import check_content
from openmmp.messages.rendering import param_texts, placeholders, render
from openmmp.models import Channel, Template
from openmmp.models.template import TemplateStatus, TemplateType
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackRejected,
    Provider,
    ProviderContext,
    TemplateEvent,
    TemplateReview,
)
from openmmp.providers.registry import REGISTRY
from openmmp.templates import flow_graph, repository
from openmmp.templates.repository import Shown
from openmmp.templates.schemas import CreateFormTemplateMessage
from openmmp.webhooks.service import webhooks

_CAUSE_LENGTH = 500


class TemplateNotFound(NotFound):
    default_name = "templateId"


class NotReviewable(Conflict):
    """The template is not the operator's to review now (its upstream reviews it, or it is not waiting)."""

    default_name = "templateId"


def _invalid(exc: ValueError) -> Invalid:
    """A provider's ValueError("<field>: <what>") as the 400 naming that field."""
    field, _, message = str(exc).partition(": ")
    if not message:
        field, message = "", field
    return Invalid(message or "not accepted", name=field or None)


def _prefixed(exc: Invalid, prefix: str) -> Invalid:
    items = [
        ErrorItem(name=f"{prefix}{item.name}", code=item.code, message=item.message) for item in exc.items
    ]
    return Invalid(items[0].message, items=items)


def _provider(template: Template) -> Provider:
    provider = REGISTRY.for_application(template.application_id)
    assert provider is not None  # a template is only saved for an application that has one
    return provider


@dataclass(frozen=True)
class _Plan:
    """A checked form: the row's values, and what to submit for the upstream's review (None: the operator
    reviews it)."""

    values: dict[str, Any]
    channel: Channel | None
    provider: Provider
    credentials: Mapping[str, Any]
    submission: dict[str, Any] | None


def _expiry(form: CreateFormTemplateMessage) -> dict[str, Any]:
    """`expireType` with the one field it needs (a 400 naming the field missing or out of place)."""
    wanted = {"NONE": None, "TTL": "ttl", "EXPIRE_TIME": "expireTime"}[form.expire_type]
    for name, value in (("ttl", form.ttl), ("expireTime", form.expire_time)):
        if name == wanted and value is None:
            raise Invalid(f"required when expireType is {form.expire_type}", name=name)
        if name != wanted and value is not None:
            raise Invalid(f"only with expireType {'TTL' if name == 'ttl' else 'EXPIRE_TIME'}", name=name)
    return {"expire_type": form.expire_type, "ttl": form.ttl, "expire_time": form.expire_time}


def _flow(form: CreateFormTemplateMessage, messages: list[dict[str, Any]]) -> None:
    """The shape of the messages: one for BROADCAST_ONLY (the one sent), a flow for CONVERSATION
    (flow_graph.py); ids unique within the template."""
    if form.type == TemplateType.BROADCAST_ONLY and len(form.messages) != 1:
        raise Invalid("a BROADCAST_ONLY template has exactly one message", name="messages")
    seen: set[str] = set()
    for index, message in enumerate(form.messages):
        if message.id in seen:
            raise Invalid("another message of the template has this id", name=f"messages[{index}].id")
        seen.add(message.id)
    if form.type == TemplateType.CONVERSATION:
        flow_graph.check(messages)


async def _operator_form(
    session: AsyncSession, keyring: Keyring, subject: Subject, form: CreateFormTemplateMessage
) -> _Plan:
    application = Application(form.application_id)
    provider = REGISTRY.of(application)
    if provider.reviews_templates:
        model = provider.template_model.__name__ if provider.template_model else "its own form"
        raise Invalid(
            f"{provider.title} reviews {application.name} templates itself: create them with {model}",
            name="applicationId",
        )
    if provider.addressing == Addressing.EMAIL:
        raise Invalid(
            f"templates are sent to phone numbers; {application.name} channels send to e-mail addresses",
            name="applicationId",
        )
    channel = None
    # Without a channel the messages are checked as for any channel of the application (the provider's
    # sample credentials); each send is checked again with its own channel's.
    credentials: Mapping[str, Any] = provider.sandbox_credentials
    if form.account_id is not None:
        channel = await channels.get(session, subject, public_id=form.account_id)
        if channel.application_id != application:
            raise Invalid(f"not a channel of applicationId {int(application)}", name="accountId")
        credentials = open_credentials(keyring, channel)
    values = _expiry(form)
    messages = []
    for index, item in enumerate(form.messages):
        stored = item.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            # As a send checks it once its params are filled in; a placeholder may stand anywhere.
            check_content(provider, stored["message"], credentials)
        except Invalid as exc:
            raise _prefixed(exc, f"messages[{index}].") from None
        messages.append(stored)
    _flow(form, messages)
    values |= {
        "company_id": subject.company_id,
        "channel_id": channel.id if channel else None,
        "application_id": int(application),
        "name": form.name,
        "type": int(form.type),
        "description": form.description,
        "messages": messages,
        "upstream": None,
        "variables": sorted(placeholders([m["message"] for m in messages]) - flow_graph.answer_ids(messages)),
    }
    return _Plan(values, channel, provider, credentials, None)


async def _upstream_form(
    session: AsyncSession, keyring: Keyring, subject: Subject, form: RequestModel
) -> _Plan:
    wire = form.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not wire.get("accountId"):
        raise Invalid("required: the channel the template is submitted through", name="accountId")
    channel = await channels.get(session, subject, public_id=str(wire["accountId"]))
    provider = REGISTRY.for_application(channel.application_id)
    if provider is None or not provider.reviews_templates or provider.template_model is not type(form):
        takers = [p.application.name for p in REGISTRY.providers if p.template_model is type(form)]
        raise Invalid(f"{type(form).__name__} is for {' and '.join(takers)} channels", name="accountId")
    try:
        variables = provider.template_variables(wire)
    except ValueError as exc:
        raise _invalid(exc) from None
    values = {
        "company_id": subject.company_id,
        "channel_id": channel.id,
        "application_id": channel.application_id,
        "name": str(wire.get("name", ""))[:200],
        "type": int(TemplateType.BROADCAST_ONLY),
        "description": None,
        "expire_type": "NONE",
        "ttl": None,
        "expire_time": None,
        "messages": [],
        "upstream": wire,
        "variables": list(variables),
    }
    return _Plan(values, channel, provider, open_credentials(keyring, channel), wire)


async def _announce(session: AsyncSession, template: Template, *, timestamp_ms: int | None = None) -> None:
    """The `type: 3` webhook of the template's status now, to its channel (none without one)."""
    if template.channel_id is None:
        return
    channel = await session.get(Channel, template.channel_id)
    if channel is None:
        return
    await webhooks.enqueue_state(
        session,
        channel=channel,
        event_type=3,
        kind="template",
        public_id=template.public_id,
        status=template.status,
        cause=template.status_cause,
        timestamp_ms=timestamp_ms,
    )


async def _change(
    session: AsyncSession,
    template: Template,
    status: TemplateStatus,
    cause: str | None,
    *,
    timestamp_ms: int | None = None,
) -> None:
    """Record the template's new status and tell the company (`type: 3`); nobody is told of a verdict
    that changes nothing (an upstream repeating itself)."""
    cause = cause[:_CAUSE_LENGTH] if cause else None
    if template.status == status and template.status_cause == cause:
        return
    template.status, template.status_cause, template.updated_at = int(status), cause, now_ms()
    await session.flush()
    await _announce(session, template, timestamp_ms=timestamp_ms)


def _verdicts(provider: Provider, raw: str, upstream_id: str) -> list[TemplateEvent]:
    try:
        events = provider.parse(raw.encode())
    except CallbackRejected:
        return []
    return [e for e in events if isinstance(e, TemplateEvent) and e.template_id == upstream_id]


async def _overtaken(session: AsyncSession, template: Template, provider: Provider, *, after: int) -> None:
    """Apply the upstream's events about `template` received after it was submitted (the events recorded
    past `after`, the last one's id before it asked) and before it was stored with its upstream id."""
    assert template.upstream_id is not None
    bodies = await repository.template_events(
        session, company_id=template.company_id, application_id=template.application_id, after=after
    )
    for raw in bodies:
        for event in _verdicts(provider, raw, template.upstream_id):
            await _apply(session, template, event)


async def _apply(session: AsyncSession, template: Template, event: TemplateEvent) -> None:
    """The upstream's event about `template`: the fields of its form it changed, and its status (kept
    when the event names none), with a `type: 3` webhook when either says something new."""
    if event.changes and template.upstream is not None:
        template.upstream = {**template.upstream, **event.changes}
    status = TemplateStatus[event.status] if event.status is not None else TemplateStatus(template.status)
    await _change(session, template, status, event.cause, timestamp_ms=event.timestamp_ms)


async def save(
    db: Database,
    keyring: Keyring,
    subject: Subject,
    context: Callable[[Provider], ProviderContext],
    *,
    form: RequestModel,
    public_id: str | None = None,
) -> Shown:
    """Create a template from `form` (CreateFormTemplateMessage or an upstream's form), or with
    `public_id` replace that one of the company's (Update); either way it waits in REQUEST, with a
    `type: 3` webhook. A form the upstream reviews is submitted first, with the channel's credentials
    (`context` gives the provider's run-time context): 400 when it refuses, 502 when it cannot be
    reached, and nothing is stored then. A template deleted while its update was submitted is a 404
    (the upstream keeps what it was sent).

    Opens its own sessions: give it no transaction.
    """
    async with db.read_sessions() as session, session.begin():
        edited = None
        if isinstance(form, CreateFormTemplateMessage):
            plan = await _operator_form(session, keyring, subject, form)
        else:
            plan = await _upstream_form(session, keyring, subject, form)
        if public_id is not None:
            earlier, _ = await get(session, subject, public_id=public_id)
            # The upstream's copy on the same channel is edited; anywhere else a new one is submitted.
            same_channel = plan.channel is not None and earlier.channel_id == plan.channel.id
            edited = earlier.upstream_id if earlier.upstream is not None and same_channel else None
        heard = await repository.last_event_id(session)
    review = None
    if plan.submission is not None:
        assert plan.channel is not None  # an upstream's form names its channel
        ctx, provider, submission = context(plan.provider), plan.provider, plan.submission

        def submit(credentials: Mapping[str, Any]) -> Awaitable[TemplateReview]:
            if edited is not None:
                return provider.edit_template(ctx, credentials, edited, submission)
            return provider.submit_template(ctx, credentials, submission)

        review = await upstream(Renewal(db, keyring).call(plan.channel, provider, ctx, submit))
    async with db.write_sessions() as session, session.begin():
        if review is not None:
            await _not_twice(session, subject, plan, review.template_id, public_id)
        if public_id is None:
            template = Template(**plan.values)
            session.add(template)
        else:
            template, _ = await get(session, subject, public_id=public_id)
            for name, value in plan.values.items():
                setattr(template, name, value)
        template.upstream_id = review.template_id[:200] if review is not None else None
        template.status = int(TemplateStatus[review.status]) if review is not None else TemplateStatus.REQUEST
        template.status_cause = (review.cause[:_CAUSE_LENGTH] or None) if review is not None else None
        template.updated_at = now_ms()
        await session.flush()
        await _announce(session, template)
        if review is not None:
            await _overtaken(session, template, plan.provider, after=heard)
    return template, plan.channel.public_id if plan.channel else None


async def _not_twice(
    session: AsyncSession, subject: Subject, plan: _Plan, upstream_id: str, public_id: str | None
) -> None:
    """409 when the template the upstream answered with is another template of the company already
    (the same form created again: the upstream's submission is idempotent, the company's list is not)."""
    twin = await repository.by_upstream_id(
        session,
        company_id=subject.company_id,
        application_id=plan.values["application_id"],
        upstream_id=upstream_id,
    )
    if twin is not None and twin.public_id != public_id:
        raise Conflict(f"the company's template {twin.public_id} is this template already", name="name")


async def get(session: AsyncSession, subject: Subject, *, public_id: str) -> Shown:
    """The company's template; `TemplateNotFound` (404) for another company's, as for one that does not
    exist."""
    found = await repository.get(session, subject, public_id)
    if found is None:
        raise TemplateNotFound("No such template")
    return found


async def delete(
    db: Database,
    keyring: Keyring,
    subject: Subject,
    context: Callable[[Provider], ProviderContext],
    *,
    public_id: str,
) -> None:
    """Delete the company's template: it cannot be sent any more, nor read. A template its upstream
    reviewed is deleted there first (a 502 when the upstream cannot be reached, and nothing changes).

    Opens its own sessions: give it no transaction.
    """
    async with db.read_sessions() as session, session.begin():
        template, _ = await get(session, subject, public_id=public_id)
        channel = await session.get(Channel, template.channel_id) if template.channel_id else None
        upstream_id, form = template.upstream_id, template.upstream
        provider = _provider(template)
    if upstream_id is not None and form is not None and channel is not None:
        ctx = context(provider)
        await upstream(
            Renewal(db, keyring).call(
                channel,
                provider,
                ctx,
                lambda credentials: provider.delete_template(ctx, credentials, upstream_id, form),
            )
        )
    async with db.write_sessions() as session, session.begin():
        template, _ = await get(session, subject, public_id=public_id)
        await session.delete(template)


async def approved(
    session: AsyncSession,
    subject: Subject,
    *,
    account_id: str | None,
    application_id: int | None,
    page: int,
    size: int,
) -> tuple[int, list[Shown]]:
    """The company's APPROVED templates (with `account_id`: those its channel can send; 404 for a channel
    that is not the company's), oldest first: (total, this page)."""
    channel = await channels.get(session, subject, public_id=account_id) if account_id is not None else None
    return await repository.approved_page(
        session,
        subject,
        channel=channel,
        application_id=application_id,
        offset=(page - 1) * size,
        limit=size,
    )


async def _review(session: AsyncSession, template: Template, *, approve: bool, cause: str | None) -> None:
    """The operator's verdict; 409 for a template its upstream reviews, or one not waiting for review."""
    if template.upstream is not None:
        raise NotReviewable(
            f"{_provider(template).title} reviews this template: its verdict comes from there"
        )
    if template.status != TemplateStatus.REQUEST:
        status = TemplateStatus(template.status).name
        raise NotReviewable(
            f"only a template waiting for review (REQUEST) is approved or rejected; it is {status}"
        )
    await _change(session, template, TemplateStatus.APPROVED if approve else TemplateStatus.REJECTED, cause)


async def review(
    session: AsyncSession, subject: Subject, *, public_id: str, approve: bool, cause: str | None
) -> Shown:
    """A partner approves or rejects a template of a company it onboarded (404 for any other template,
    and for every template when `subject` is no partner); 409 unless it waits for the operator's review."""
    found = await repository.reviewable(session, subject, public_id)
    if found is None:
        raise TemplateNotFound("No such template")
    await _review(session, found[0], approve=approve, cause=cause)
    return found


async def operator_review(
    session: AsyncSession, *, public_id: str, approve: bool, cause: str | None
) -> Shown:
    """The operator, on the machine (CLI), approves or rejects any company's template; as `review`."""
    found = await repository.by_public_id(session, public_id)
    if found is None:
        raise TemplateNotFound("No such template")
    await _review(session, found[0], approve=approve, cause=cause)
    return found


async def operator_list(
    session: AsyncSession, *, status: TemplateStatus | None, limit: int
) -> list[tuple[Template, str | None, str]]:
    """Every company's templates (of one `status`), oldest first, with their accountId and companyPublicId:
    the operator's queue of templates to review (CLI)."""
    return await repository.by_status(session, status, limit=limit)


async def apply_event(session: AsyncSession, channel: Channel, event: TemplateEvent) -> bool:
    """Apply an upstream's verdict that arrived in a callback of `channel`: the template of the channel's
    company that the upstream of its application knows by `event.template_id` takes the status (with a
    `type: 3` webhook). False when the company has no such template (a verdict about an earlier
    submission of a template updated since, or one that overtook its submission: `save` applies those)."""
    template = await repository.by_upstream_id(
        session,
        company_id=channel.company_id,
        application_id=channel.application_id,
        upstream_id=event.template_id,
    )
    if template is None:
        return False
    await _apply(session, template, event)
    return True


def check_params(template: Template, params: Mapping[str, Any]) -> dict[str, str]:
    """`params` as text, once they give each variable of `template` and no other; else a 400 naming each
    one missing or unknown (`params.<name>`)."""
    wanted = set(template.variables)
    faults = [
        ErrorItem(name=f"params.{name}", code=ErrorCode.INVALID, message="missing value")
        for name in template.variables
        if name not in params
    ] + [
        ErrorItem(name=f"params.{name}", code=ErrorCode.INVALID, message="not a variable of the template")
        for name in params
        if name not in wanted
    ]
    if faults:
        raise Invalid("the params do not fit the template's variables", items=faults)
    return param_texts(params)


def _usable_on(template: Template, channel: Channel) -> bool:
    return template.application_id == channel.application_id and template.channel_id in (None, channel.id)


async def sendable(session: AsyncSession, subject: Subject, *, public_id: str, channel: Channel) -> Template:
    """The company's APPROVED template that `channel` (the company's) may send: of its application, and
    its own when the template has a channel. 404 (`templateId`) for another company's or an unknown
    template; 400 naming `templateId` for one not APPROVED or not for this channel."""
    template, _ = await get(session, subject, public_id=public_id)
    if template.status != TemplateStatus.APPROVED:
        status = TemplateStatus(template.status).name
        raise Invalid(f"the template is {status}: only an APPROVED template is sent", name="templateId")
    if not _usable_on(template, channel):
        raise Invalid("the template is not for this channel", name="templateId")
    return template


def variables_of(template: Template) -> list[str]:
    """The parameters a send of `template` must give (`params`), and no other."""
    return list(template.variables)


def send_expiry(template: Template) -> dict[str, Any] | None:
    """The template's expiry, as a send's `expire` (NONE: the send's own default)."""
    if template.expire_type == "TTL" and template.ttl is not None:
        return {"type": "TTL", "ttl": template.ttl}
    if template.expire_type == "EXPIRE_TIME" and template.expire_time is not None:
        return {"type": "EXPIRE_TIME", "expireTime": template.expire_time}
    return None


def message_for(template: Template, params: Mapping[str, str]) -> dict[str, Any]:
    """The MMP message object (api.md §3) a send of `template` goes as: for a template its upstream
    reviewed, the provider's template message with `params` in it (a 400 naming a parameter the upstream
    would refuse); for any other, its first message (a CONVERSATION template's START message) as stored,
    placeholders not filled (the send fills them from its `params`)."""
    if template.upstream is None:
        first = next((m for m in template.messages if m["status"] == "START"), template.messages[0])
        message: dict[str, Any] = dict(first["message"])
        return message
    try:
        assert template.upstream_id is not None  # an upstream's form is stored with its id
        return _provider(template).template_message(
            template.upstream, params, template_id=template.upstream_id
        )
    except ValueError as exc:
        raise _invalid(exc) from None


async def of_company(session: AsyncSession, subject: Subject, *, offset: int, limit: int) -> list[Shown]:
    """The company's templates, newest first, whatever their status (the portal's list)."""
    return await repository.newest(session, subject, offset=offset, limit=limit)


async def preview(
    session: AsyncSession,
    keyring: Keyring,
    subject: Subject,
    *,
    public_id: str,
    params: Mapping[str, Any],
    account_id: str | None,
) -> dict[str, Any]:
    """The message the company's template would send with `params` (each variable, no other: else a 400
    naming them), checked on the channel `account_id` (its own when not given and it has one) as a send
    there would check it. Whatever its status."""
    template, _ = await get(session, subject, public_id=public_id)
    given = check_params(template, params)
    channel = None
    if account_id is not None:
        channel = await channels.get(session, subject, public_id=account_id)
        if not _usable_on(template, channel):
            raise Invalid("the template is not for this channel", name="accountId")
    elif template.channel_id is not None:
        channel = await session.get(Channel, template.channel_id)
    message = message_for(template, given)
    if template.upstream is None:
        message = render(message, given)
    if channel is not None:
        check_content(_provider(template), message, open_credentials(keyring, channel))
    return message
