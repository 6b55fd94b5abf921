"""The Template routes (api.md §4.5): HTTP to `templates.service` and back.

Create and Update talk to an upstream for the templates it reviews, so they take no request transaction
(`service.save` opens short sessions of its own around the upstream call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from openmmp.api_keys.auth import CompanyKey
from openmmp.deps import KeyringDep, SettingsDep
from openmmp.errors import responses
from openmmp.kit.db import SessionDep, after_commit, request_database
from openmmp.kit.schemas import MessageId, PageNumber, PageSize
from openmmp.messages.schemas import MessageObject
from openmmp.providers.applications import Application
from openmmp.providers.base import Provider, ProviderContext
from openmmp.providers.registry import REGISTRY
from openmmp.templates import flows
from openmmp.templates import service as templates
from openmmp.templates.repository import Shown
from openmmp.templates.schemas import (
    PreviewTemplateRequest,
    RejectTemplateRequest,
    ResponseCreateTemplateMessage,
    ResponseGetTemplate,
    ResponseListApproveTemplate,
    ResponseTemplateFlow,
    TemplateForm,
)

router = APIRouter(prefix="/template", tags=["Template"])

TemplateId = Annotated[str, Path(alias="templateId", description="The template's `publicId`")]

_FORMS = (
    "The body is CreateFormTemplateMessage: messages with `{{name}}` placeholders (anywhere in their text), "
    "each checked as a send on `applicationId` would check it (a 400 naming the field, e.g. "
    "`messages[0].message.type`); the operator approves it. A template with `accountId` is that channel's "
    "(the company's, of `applicationId`); without, it serves every channel of the application. Its "
    "`variables` are the placeholders found: a send gives each of them in `params`, and no other."
) + "".join(
    f"\n\n{p.application.name} templates are reviewed by {p.title}: the body is "
    f"{p.template_model.__name__ if p.template_model else 'its own form'} (with the channel's `accountId`), "
    "submitted there at once; the verdict comes later. 400 naming `upstream` when it refuses the template, "
    "502 when it cannot be reached: nothing is stored then."
    for p in REGISTRY.providers
    if p.reviews_templates
)
_WEBHOOK = (
    " Each change of status is a `type: 3` webhook to the template's channel; a template without a channel "
    "has no webhook endpoint: read its status with Get Template."
)


def _upstream_context(request: Request, settings: SettingsDep) -> Callable[[Provider], ProviderContext]:
    """The run-time context of a provider, for the calls to an upstream that reviews templates."""

    def context(provider: Provider) -> ProviderContext:
        return settings.provider_context(provider, request.app.state.http)

    return context


UpstreamContext = Annotated[Callable[[Provider], ProviderContext], Depends(_upstream_context)]


def _read(shown: Shown) -> ResponseGetTemplate:
    template, account_id = shown
    return ResponseGetTemplate(
        public_id=template.public_id,
        name=template.name,
        type=template.type,
        status=template.status,
        cause=template.status_cause,
        application_id=template.application_id,
        account_id=account_id,
        description=template.description,
        expire_type=template.expire_type,
        ttl=template.ttl,
        expire_time=template.expire_time,
        messages=template.messages,
        upstream=template.upstream,
        upstream_id=template.upstream_id,
        variables=template.variables,
        created_date=template.created_at,
        updated_date=template.updated_at,
    )


@router.post(
    "",
    summary="Create Template",
    description="Creates a template, waiting for review (status 1 REQUEST). " + _FORMS + _WEBHOOK,
    status_code=201,
    response_model=ResponseCreateTemplateMessage,
    responses=responses(400, 401, 403, 404, 413, 502),
)
async def create_template(
    body: Annotated[TemplateForm, Body()],
    subject: CompanyKey,
    request: Request,
    keyring: KeyringDep,
    context: UpstreamContext,
) -> ResponseCreateTemplateMessage:
    template, _ = await templates.save(request_database(request), keyring, subject, context, form=body)
    request.app.state.wake_workers()
    return ResponseCreateTemplateMessage(
        public_id=template.public_id, name=template.name, status=template.status
    )


@router.get(
    "/approved",
    summary="List approved templates",
    description="The company's APPROVED templates, oldest first. With `accountId`, those that channel can "
    "send (its own and its application's without a channel; 404 for a channel that is not the company's); "
    "with `applicationId`, that application's.",
    response_model=ResponseListApproveTemplate,
    responses=responses(400, 401, 403, 404),
)
async def list_approved(
    subject: CompanyKey,
    session: SessionDep,
    account_id: Annotated[str | None, Query(alias="accountId", min_length=1, max_length=36)] = None,
    application_id: Annotated[Application | None, Query(alias="applicationId")] = None,
    page: PageNumber = 1,
    size: PageSize = 20,
) -> ResponseListApproveTemplate:
    total, items = await templates.approved(
        session, subject, account_id=account_id, application_id=application_id, page=page, size=size
    )
    return ResponseListApproveTemplate(total=total, page=page, size=size, items=[_read(i) for i in items])


@router.get(
    "/flow/{messageId}",
    summary="Get Conversation Flow",
    description="The conversation flow a CONVERSATION template's Broadcast Template Message started, by "
    "the `messageId` its answer gave: where it is (WAITING for a reply, COMPLETE, ERROR), the end user's "
    "answers by `answerId`, and the messages it sent. 404 for a message that started no flow of the "
    "company's.",
    response_model=ResponseTemplateFlow,
    responses=responses(401, 403, 404),
)
async def get_flow(message_id: MessageId, subject: CompanyKey, session: SessionDep) -> ResponseTemplateFlow:
    flow, account_id, to = await flows.get(session, subject, message_id)
    return ResponseTemplateFlow(
        message_id=flow.message_id,
        template_id=flow.template_public_id,
        account_id=account_id,
        phone=flow.phone,
        to=to,
        status=flow.status,
        step=flow.step,
        answers=flow.answers,
        messages=flow.sent,
        cause=flow.cause,
        expire_time=flow.expire_at,
        created_date=flow.created_at,
        updated_date=flow.updated_at,
    )


@router.get(
    "/{templateId}",
    summary="Get Template",
    description="The template with its status, messages (or upstream form) and `variables`.",
    response_model=ResponseGetTemplate,
    responses=responses(401, 403, 404),
)
async def get_template(
    template_id: TemplateId, subject: CompanyKey, session: SessionDep
) -> ResponseGetTemplate:
    return _read(await templates.get(session, subject, public_id=template_id))


@router.post(
    "/{templateId}",
    summary="Update Template",
    description="Replaces the template with the body (the same forms as Create Template) under the same "
    "`publicId`; it waits for review again (1 REQUEST: not sendable until approved again). A template its "
    "upstream reviewed is edited there (a new name: submitted anew, the old one deleted there). "
    + _FORMS
    + _WEBHOOK,
    response_model=ResponseGetTemplate,
    responses=responses(400, 401, 403, 404, 413, 502),
)
async def update_template(
    template_id: TemplateId,
    body: Annotated[TemplateForm, Body()],
    subject: CompanyKey,
    request: Request,
    keyring: KeyringDep,
    context: UpstreamContext,
) -> ResponseGetTemplate:
    saved = await templates.save(
        request_database(request), keyring, subject, context, form=body, public_id=template_id
    )
    request.app.state.wake_workers()
    return _read(saved)


@router.delete(
    "/{templateId}",
    summary="Delete Template",
    description="Deletes the template: it cannot be sent, nor read, any more (204). A template its "
    "upstream reviewed (WhatsApp: Meta) is deleted there first: 502 when the upstream cannot be reached, "
    "and nothing changes.",
    status_code=204,
    response_class=Response,
    responses=responses(400, 401, 403, 404, 502),
)
async def delete_template(
    template_id: TemplateId,
    subject: CompanyKey,
    request: Request,
    keyring: KeyringDep,
    context: UpstreamContext,
) -> Response:
    await templates.delete(request_database(request), keyring, subject, context, public_id=template_id)
    return Response(status_code=204)


@router.post(
    "/{templateId}/preview",
    summary="Preview Template",
    description="The MMP message object (api.md §3) the template sends with `params`, whatever its status: "
    "its first message with the placeholders filled in, or for a template its upstream reviews the "
    "upstream's template message. Checked on the channel `accountId` (default: the template's own) as a "
    "send there would check it. 400 naming each parameter missing or unknown to the template "
    "(`params.<name>`), or `accountId` for a channel the template is not for.",
    response_model=None,
    responses={
        200: {"model": MessageObject, "description": "The message"},
        **responses(400, 401, 403, 404, 413),
    },
)
async def preview_template(
    template_id: TemplateId,
    body: PreviewTemplateRequest,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
) -> dict[str, Any]:
    return await templates.preview(
        session, keyring, subject, public_id=template_id, params=body.params, account_id=body.account_id
    )


_REVIEW = (
    " For the operator's partner key: a template of a company it onboarded (404 for any other, and for "
    "any key that is not a partner's), waiting for review (1 REQUEST) and not reviewed by its upstream "
    "(409 otherwise)." + _WEBHOOK
)


@router.post(
    "/{templateId}/approve",
    summary="Approve Template",
    description="The template becomes 2 APPROVED: it can be sent." + _REVIEW,
    response_model=ResponseGetTemplate,
    responses=responses(401, 403, 404, 409),
)
async def approve_template(
    template_id: TemplateId, subject: CompanyKey, session: SessionDep, request: Request
) -> ResponseGetTemplate:
    shown = await templates.review(session, subject, public_id=template_id, approve=True, cause=None)
    after_commit(request, request.app.state.wake_workers)
    return _read(shown)


@router.post(
    "/{templateId}/reject",
    summary="Reject Template",
    description="The template becomes 3 REJECTED, with `cause` for the company." + _REVIEW,
    response_model=ResponseGetTemplate,
    responses=responses(400, 401, 403, 404, 409, 413),
)
async def reject_template(
    template_id: TemplateId,
    body: RejectTemplateRequest,
    subject: CompanyKey,
    session: SessionDep,
    request: Request,
) -> ResponseGetTemplate:
    shown = await templates.review(session, subject, public_id=template_id, approve=False, cause=body.cause)
    after_commit(request, request.app.state.wake_workers)
    return _read(shown)
