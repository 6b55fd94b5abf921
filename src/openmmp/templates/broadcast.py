"""Broadcast Template Message (api.md §4.2): an approved template to one subscriber or a group of them.

Everything is checked before anything is queued (the preflight): the template must be APPROVED and usable
on the channel, each subscriber's `params` must give every variable of the template and no other (a 400
naming the subscriber and the variable, e.g. `subscribers[3].params.name`), and each send must pass the
checks of Broadcast Message (its phone, its message on that channel). Then every send goes as Broadcast
Message would, in one transaction, with its idempotency (`clientMessageId`), status history and webhooks.

The message sent is the template's (`service.message_for`): a template the upstream reviewed goes as the
provider's template message with the parameters in it; any other is its message with `{{name}}`
placeholders, which the send fills from the subscriber's `params`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request
from pydantic import Discriminator, Field, Tag, ValidationError, WrapValidator

from openmmp.api_keys.auth import CompanyKey, Subject
from openmmp.channels.service import channels
from openmmp.deps import KeyringDep
from openmmp.errors import Conflict, ErrorCode, ErrorItem, Invalid, responses, validation_items
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.schemas import AccountId, RequestModel, ResponseModel
from openmmp.messages.rendering import param_texts
from openmmp.messages.schemas import BroadcastResponseMessage, ParamValue, SendMessageBroadcast
from openmmp.messages.service import messages
from openmmp.models import Template
from openmmp.models.template import TemplateType
from openmmp.templates import flows
from openmmp.templates import service as templates
from openmmp.templates.schemas import untagged

router = APIRouter(prefix="/channel", tags=["Template"])

MAX_SUBSCRIBERS = 1000
MAX_FAULTS = 100
"""At most this many faults are listed in a 400 (a group of 1,000 all wrong says enough with these)."""


class BroadcastSubscriberMessage(RequestModel):
    """An approved template to one subscriber."""

    template_id: str = Field(min_length=1, max_length=36, description="The template's publicId")
    phone: str = Field(min_length=1, max_length=32)
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="A value for each variable of the template, and no other"
    )
    client_message_id: str | None = Field(
        default=None, min_length=1, max_length=100, description="Idempotency key, unique per company"
    )
    request_id: str | None = Field(default=None, max_length=100)


class TemplateSubscriber(RequestModel):
    phone: str = Field(min_length=1, max_length=32)
    params: dict[str, ParamValue] = Field(default_factory=dict)
    client_message_id: str | None = Field(default=None, min_length=1, max_length=100)


class BroadcastSubscriberGroupMessage(RequestModel):
    """An approved template to up to 1,000 subscribers, each with their own parameters: all or none."""

    template_id: str = Field(min_length=1, max_length=36, description="The template's publicId")
    subscribers: list[TemplateSubscriber] = Field(min_length=1, max_length=MAX_SUBSCRIBERS)
    request_id: str | None = Field(default=None, max_length=100)


class ListSubscriberResponseMessage(ResponseModel):
    request_id: str | None
    template_id: str
    messages: list[BroadcastResponseMessage] = Field(description="One per subscriber, in the order given")


def _form(body: Any) -> Literal["single", "group"]:
    return "group" if isinstance(body, Mapping) and "subscribers" in body else "single"


TemplateBroadcast = Annotated[
    Annotated[BroadcastSubscriberMessage, Tag("single")]
    | Annotated[BroadcastSubscriberGroupMessage, Tag("group")],
    Discriminator(_form),
    WrapValidator(untagged),
]


def preflight(variables: Sequence[str], given: Sequence[Mapping[str, Any]], *, names: Sequence[str]) -> None:
    """A 400 listing every missing or unknown parameter (`{names[i]}.params.<variable>`; `params.<variable>`
    for a name that is empty: a single subscriber)."""
    wanted = set(variables)
    faults = []
    for name, params in zip(names, given, strict=True):
        where = f"{name}.params" if name else "params"
        faults += [
            ErrorItem(name=f"{where}.{v}", code=ErrorCode.INVALID, message="missing value")
            for v in variables
            if v not in params
        ]
        faults += [
            ErrorItem(name=f"{where}.{p}", code=ErrorCode.INVALID, message="not a variable of the template")
            for p in params
            if p not in wanted
        ]
    if faults:
        raise Invalid(
            f"the template's parameters do not fit ({len(faults)} faults)", items=faults[:MAX_FAULTS]
        )


async def _template(
    db: Database, subject: Subject, account_id: str, template_id: str
) -> tuple[Template, list[str]]:
    """The APPROVED template usable on the channel, and its variables (a short read session)."""
    async with db.read_sessions() as session, session.begin():
        channel = await channels.get(session, subject, public_id=account_id)
        template = await templates.sendable(session, subject, public_id=template_id, channel=channel)
    return template, templates.variables_of(template)


def send_item(
    template: Template, subscriber: TemplateSubscriber, request_id: str | None, *, name: str
) -> dict[str, Any]:
    """The subscriber's Broadcast Message (wire names); a 400 naming the parameter the upstream's template
    refuses (`{name}.params.<variable>`)."""
    params = param_texts(subscriber.params)
    try:
        message = templates.message_for(template, params)
    except Invalid as exc:
        if not name:
            raise
        named = [item.model_copy(update={"name": f"{name}.{item.name}"}) for item in exc.items]
        raise Invalid(exc.message, items=named) from None
    item: dict[str, Any] = {
        "phone": subscriber.phone,
        "message": message,
        # An upstream's template message holds the values already: filling placeholders again could
        # take a value's own "{{...}}" for one.
        "params": None if template.upstream is not None else subscriber.params,
        "clientMessageId": subscriber.client_message_id,
        "requestId": request_id,
        "expire": templates.send_expiry(template),
    }
    return {k: v for k, v in item.items() if v is not None}


@router.post(
    "/{accountId}/broadcast-template",
    summary="Broadcast Template Message",
    description="An APPROVED template to one subscriber (BroadcastSubscriberMessage → "
    "BroadcastResponseMessage) or to up to 1,000 (BroadcastSubscriberGroupMessage → "
    "ListSubscriberResponseMessage). Everything is "
    "checked before anything is queued: a parameter missing or unknown to the template is a 400 naming it "
    "(`params.<name>`, or `subscribers[i].params.<name>`), as is any subscriber Broadcast Message would "
    "refuse (`subscribers[i].phone`, ...); then each send goes as Broadcast Message's, with its idempotency "
    "by `clientMessageId`, its statuses and webhooks. 400 naming `templateId` for a template not APPROVED "
    "or not for this channel; 404 for another company's. A CONVERSATION template starts a conversation "
    "flow with each subscriber: the answer's `messageId` is its START message, and Get Conversation Flow "
    "follows it.",
    response_model=BroadcastResponseMessage | ListSubscriberResponseMessage,
    responses=responses(400, 401, 403, 404, 409, 413),
)
async def broadcast_template(
    account_id: AccountId,
    body: Annotated[TemplateBroadcast, Body()],
    request: Request,
    subject: CompanyKey,
    keyring: KeyringDep,
) -> BroadcastResponseMessage | dict[str, Any]:
    state = request.app.state
    template, variables = await _template(state.db, subject, account_id, body.template_id)
    if isinstance(body, BroadcastSubscriberMessage):
        one = TemplateSubscriber(
            phone=body.phone, params=body.params, client_message_id=body.client_message_id
        )
        preflight(variables, [one.params], names=[""])
        if template.type == TemplateType.CONVERSATION:
            [first] = await _start_flows(
                request, keyring, subject, account_id, template, [one], body.request_id, single=True
            )
            if "errors" in first:
                raise Conflict("clientMessageId was already used with another body", name="clientMessageId")
            return BroadcastResponseMessage.model_validate(first)
        # As Broadcast Message: its checks, its batch, its answers (a reused clientMessageId is a 409).
        try:
            send = SendMessageBroadcast.model_validate(send_item(template, one, body.request_id, name=""))
        except ValidationError as exc:
            raise Invalid(
                "the template's message cannot be sent", items=validation_items(exc.errors())
            ) from None
        return await messages.send(
            state.db, state.sends, keyring, subject, account_id=account_id, request=send
        )
    names = [f"subscribers[{i}]" for i in range(len(body.subscribers))]
    preflight(variables, [s.params for s in body.subscribers], names=names)
    sent = await _start_flows(
        request, keyring, subject, account_id, template, body.subscribers, body.request_id
    )
    return {"requestId": body.request_id, "templateId": body.template_id, "messages": sent}


async def _start_flows(
    request: Request,
    keyring: Keyring,
    subject: Subject,
    account_id: str,
    template: Template,
    subscribers: list[TemplateSubscriber],
    request_id: str | None,
    *,
    single: bool = False,
) -> list[dict[str, Any]]:
    """The subscribers' sends, all or none, in one transaction with the flows a CONVERSATION template
    starts (flows.py). A `single` subscriber's faults are named as Broadcast Message names them
    (`phone`, ...), a group's `subscribers[i].<field>`."""
    names = [""] if single else [f"subscribers[{i}]" for i in range(len(subscribers))]
    items = [
        send_item(template, subscriber, request_id, name=name)
        for name, subscriber in zip(names, subscribers, strict=True)
    ]
    state = request.app.state
    try:
        async with state.db.write_sessions() as session, session.begin():
            sent = await messages.broadcast_batch(
                session, keyring, subject, account_id=account_id, items=items, whole="subscribers"
            )
            if template.type == TemplateType.CONVERSATION:
                await flows.start(
                    session,
                    keyring,
                    subject,
                    template=template,
                    answers=sent,
                    params=[s.params for s in subscribers],
                )
    except Invalid as exc:
        if not single:
            raise
        unnamed = [i.model_copy(update={"name": i.name.removeprefix("subscribers[0].")}) for i in exc.items]
        raise Invalid(unnamed[0].message, items=unnamed) from None
    state.wake_workers()
    return sent
