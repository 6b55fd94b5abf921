"""Wire schemas of the Template endpoints (api.md §4.5): names are the MMP API's.

A template is created with one of several forms: CreateFormTemplateMessage (messages with `{{name}}`
placeholders, approved by the operator), or the form of an upstream that reviews templates itself (its
provider's `template_model`, e.g. WhatsappFormCreateTemplateMessage). The body is told apart by its
shape (`TemplateForm`), so the OpenAPI document shows each form under its own name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from openmmp.kit.schemas import RequestModel, ResponseModel
from openmmp.messages.schemas import MessageObject, ParamValue
from openmmp.models.template import TemplateType
from openmmp.providers.applications import Application
from openmmp.providers.registry import REGISTRY

MAX_MESSAGES = 50
ExpireType = Literal["NONE", "TTL", "EXPIRE_TIME"]
TemplateMessageStatus = Literal["START", "NORMAL", "COMPLETE", "ERROR"]


class TemplateMessage(RequestModel):
    """One message of a template. A BROADCAST_ONLY template has one; a CONVERSATION template is a flow of
    several, driven by the end user's replies (templates/flows.py): the START message is sent first; a
    message with an `answerId` waits for the reply and keeps it as `{{answerId}}`; `nextMessageBaseOn`
    places each other message after the one it follows (`"<id>"`, whatever the reply, or
    `"<id>:<answer>"`, for that reply); a COMPLETE or ERROR message ends the flow."""

    id: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^:\s]+$",
        description="The message's id within the template (no spaces, no `:`)",
    )
    name: str = Field(min_length=1, max_length=200)
    message: MessageObject = Field(
        description="The MMP message object (api.md §3), as a send on the template's application takes it; "
        "`{{name}}` placeholders may stand anywhere in its text"
    )
    next_message_base_on: str | None = Field(
        default=None,
        min_length=1,
        max_length=600,
        description="CONVERSATION: the message this one follows, `<id>` (whatever the reply to it) or "
        "`<id>:<answer>` (when the reply is `<answer>`, compared without case); none for the START message "
        "and for the ERROR message sent when a reply fits no message",
    )
    answer_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="CONVERSATION: the flow waits for the end user's reply to this message and keeps it "
        "under this name, usable as `{{answerId}}` in the messages after it",
    )
    status: TemplateMessageStatus = Field(
        description="START: the flow's first message; NORMAL: a message within it; COMPLETE: the flow ends "
        "once it is sent; ERROR: the flow ends as failed once it is sent"
    )


class CreateFormTemplateMessage(RequestModel):
    """A template of MMP messages, for applications whose upstream does not review templates: the
    operator approves it."""

    name: str = Field(min_length=1, max_length=200)
    type: TemplateType = Field(description="1 BROADCAST_ONLY (one message), 2 CONVERSATION (a flow)")
    application_id: Application
    account_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=36,
        description="The channel the template is for; without it, every channel of `applicationId`",
    )
    description: str | None = Field(default=None, max_length=1000)
    expire_type: ExpireType = Field(default="NONE", description="How long its messages are worth delivering")
    ttl: int | None = Field(default=None, ge=1, le=1_209_600, description="Seconds (expireType TTL)")
    expire_time: int | None = Field(default=None, ge=0, description="Epoch ms (expireType EXPIRE_TIME)")
    messages: list[TemplateMessage] = Field(min_length=1, max_length=MAX_MESSAGES)


UPSTREAM_FORMS: tuple[type[RequestModel], ...] = tuple(
    dict.fromkeys(
        p.template_model for p in REGISTRY.providers if p.reviews_templates and p.template_model is not None
    )
)
"""The forms of the upstreams that review templates themselves, each a provider's `template_model`."""
_FORMS: tuple[type[RequestModel], ...] = (CreateFormTemplateMessage, *UPSTREAM_FORMS)


def _wire_names(model: type[RequestModel]) -> frozenset[str]:
    return frozenset(field.alias or name for name, field in model.model_fields.items())


_FIELDS = {model.__name__: _wire_names(model) for model in _FORMS}


def _form(body: Any) -> str:
    """The form a body is: the one whose fields it uses most (CreateFormTemplateMessage on a tie), so a
    body that is wrong is refused with the errors of the form it was meant to be."""
    keys = set(body) if isinstance(body, Mapping) else set()
    return max(_FIELDS, key=lambda name: len(keys & _FIELDS[name]))


_NAMED = re.compile(r"Value error, ([A-Za-z_][A-Za-z0-9_.\[\]]*): (.+)", re.DOTALL)
"""A form's own check of several fields at once, naming the one at fault as providers do: "<field>: ..."."""


def untagged(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Errors named as in the body: without the form's name, which a tagged union puts first, and an
    error of the whole form under the field its message names."""
    try:
        return handler(value)
    except ValidationError as exc:
        details = []
        for error in exc.errors():
            loc, message = error["loc"][1:], error["msg"]
            named = _NAMED.fullmatch(message) if not loc and error["type"] == "value_error" else None
            if named:
                loc, message = (named[1],), f"Value error, {named[2]}"
            details.append(
                InitErrorDetails(
                    type=PydanticCustomError(error["type"], message), loc=loc, input=error["input"]
                )
            )
        raise ValidationError.from_exception_data(exc.title, details) from None


def _union(forms: tuple[type[RequestModel], ...]) -> Any:
    """One body type for `forms`: the form itself when there is one, else a union told apart by shape."""
    if len(forms) == 1:
        return forms[0]
    tagged = tuple(Annotated[model, Tag(model.__name__)] for model in forms)
    return Annotated[Union[tagged], Discriminator(_form), WrapValidator(untagged)]  # noqa: UP007


if TYPE_CHECKING:
    TemplateForm = RequestModel
else:
    TemplateForm = _union(_FORMS)
"""The body of Create and Update: CreateFormTemplateMessage, or an upstream's own form."""


class ResponseCreateTemplateMessage(ResponseModel):
    public_id: str = Field(description="The template's id (`templateId` in URLs and sends)")
    name: str
    status: int = Field(description="0 DRAFT, 1 REQUEST (waiting for review), 2 APPROVED, 3 REJECTED")


class ResponseGetTemplate(ResponseModel):
    """A template as its company sees it."""

    public_id: str = Field(description="The template's id (`templateId` in URLs and sends)")
    name: str
    type: int = Field(description="1 BROADCAST_ONLY, 2 CONVERSATION")
    status: int = Field(description="0 DRAFT, 1 REQUEST (waiting for review), 2 APPROVED, 3 REJECTED")
    cause: str | None = Field(
        description="Why it has its status, when the reviewer said (a rejection's reason)"
    )
    application_id: int
    account_id: str | None = Field(description="Its channel; null: every channel of its application")
    description: str | None
    expire_type: str = Field(description="NONE, TTL or EXPIRE_TIME")
    ttl: int | None
    expire_time: int | None
    messages: list[dict[str, Any]] = Field(
        description="Its TemplateMessage objects (empty for an upstream's form)"
    )
    upstream: dict[str, Any] | None = Field(
        description="The upstream's form it was created with, for applications whose upstream reviews "
        "templates (WhatsApp: WhatsappFormCreateTemplateMessage); else null"
    )
    upstream_id: str | None = Field(description="The upstream's id of the template, once submitted there")
    variables: list[str] = Field(description="The parameters a send of it must give (`params`), and no other")
    created_date: int
    updated_date: int


class ResponseListApproveTemplate(ResponseModel):
    total: int
    page: int
    size: int
    items: list[ResponseGetTemplate]


class PreviewTemplateRequest(RequestModel):
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="A value for each variable of the template, and no other"
    )
    account_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=36,
        description="The channel to check the message on (default: the template's own, if it has one)",
    )


class RejectTemplateRequest(RequestModel):
    cause: str = Field(min_length=1, max_length=500, description="Why, in a sentence the company reads")


class ResponseTemplateFlow(ResponseModel):
    """A conversation flow a CONVERSATION template started with one end user."""

    message_id: str = Field(description="The messageId of its START message (the Broadcast Template Message)")
    template_id: str
    account_id: str = Field(description="The channel it runs on")
    phone: str | None = Field(description="The recipient's phone, when known")
    to: str | None = Field(description="The recipient's conversation id, once they have written")
    status: Literal["WAITING", "COMPLETE", "ERROR"] = Field(
        description="WAITING for the reply to `step`; COMPLETE or ERROR once ended"
    )
    step: str = Field(description="The id of the template message sent last")
    answers: dict[str, str] = Field(description="The replies so far, by `answerId`")
    messages: list[str] = Field(description="The messageId of each message it sent, in order")
    cause: str | None = Field(description="Why it ended as it did, when not by its own messages")
    expire_time: int | None = Field(description="When it stops taking replies (epoch ms), by the template")
    created_date: int
    updated_date: int
