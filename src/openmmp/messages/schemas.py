"""Wire schemas of the send and status endpoints (api.md §3, §4.3, §4.4): names are the MMP API's."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from openmmp.kit.schemas import RequestModel, ResponseModel
from openmmp.kit.validators import HttpUrl, Mailbox, http_url


class MessageType(StrEnum):
    TEXT = "text"
    TEXT_WITH_ATTACHMENT = "text_with_attachment"
    RICH_CARD = "rich_card"
    PICTURE = "picture"
    VIDEO = "video"
    FILE = "file"
    RICH_LINK = "richLink"
    LIST_PICKER = "listPicker"
    QUICK_REPLY = "quickReply"
    LOCATION = "location"
    FB_WHATSAPP_TEMPLATE = "fb_whatsapp_template"
    FB_WHATSAPP_INTERACTIVE = "FB_WHATSAPP_INTERACTIVE"
    ZALO_ZNS_TEMPLATE = "zalo_zns_template"


SuggestionAction = Literal[
    "open-url", "reply", "dial", "CalendarEventAction", "VIEW_LOCATION", "SHARE_LOCATION"
]


class Suggestion(RequestModel):
    action: SuggestionAction
    text: str = Field(min_length=1, max_length=200)
    postback_data: str | None = Field(
        default=None, max_length=2000, description="URL for open-url (http or https), number for dial"
    )

    @model_validator(mode="after")
    def _web_link(self) -> Suggestion:
        # A button's link is opened on the end user's phone: javascript:, file: and the like never.
        if self.action == "open-url" and self.postback_data is not None:
            self.postback_data = http_url(self.postback_data)
        return self


class Attachment(RequestModel):
    type: str = Field(max_length=100, description="MIME type")
    name: str = Field(max_length=200)
    url: HttpUrl
    size: int | None = Field(default=None, ge=0)


class RichCard(RequestModel):
    title: str | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=2000)
    image: HttpUrl | None = None
    suggestions: list[Suggestion] | None = Field(default=None, max_length=10)


class RcsRichCardsOpts(RequestModel):
    type: Literal["STANDALONE", "CAROUSEL"]
    orientation: str | None = None
    image_align: str | None = None


class ListPickerItem(RequestModel):
    title: str = Field(max_length=200)
    value: str = Field(max_length=200)
    subtitle: str | None = Field(default=None, max_length=200)
    image: HttpUrl | None = None


class Location(RequestModel):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=500)


class WhatsappTemplateParam(RequestModel):
    template_id: str = Field(max_length=200)
    language: str | None = Field(default=None, max_length=20)
    header: list[Any] | None = None
    body: list[Any] | None = None
    buttons: list[Any] | None = None


class ZaloZnsTemplateParam(RequestModel):
    template_id: str = Field(max_length=200)
    template_data: dict[str, str]


class MessageObject(RequestModel):
    """The `message` of a send (api.md §3). Which fields a type needs is checked per channel."""

    type: MessageType
    message: str | None = Field(
        default=None, max_length=10_000, description="Text or caption; may hold {{name}}"
    )
    suggestions: list[Suggestion] | None = Field(default=None, max_length=20)
    file_url: HttpUrl | None = None
    file_name: str | None = Field(default=None, max_length=200)
    file_size: int | None = Field(default=None, ge=0)
    thumbnail_url: HttpUrl | None = None
    attachments: list[Attachment] | None = Field(default=None, max_length=10)
    rich_cards: list[RichCard] | None = Field(default=None, min_length=1, max_length=10)
    rcs_rich_cards_opts: RcsRichCardsOpts | None = None
    rich_link_url: HttpUrl | None = None
    list_picker: list[ListPickerItem] | None = Field(default=None, max_length=50)
    allow_multiple: bool | None = None
    location: Location | None = None
    whatsapp_template_param: WhatsappTemplateParam | None = None
    whatsapp_interactive: dict[str, Any] | None = None
    zalo_zns_template_param: ZaloZnsTemplateParam | None = None


class Expire(RequestModel):
    type: Literal["TTL", "EXPIRE_TIME"]
    ttl: int | None = Field(default=None, ge=1, le=1_209_600, description="Seconds from acceptance")
    expire_time: int | None = Field(default=None, ge=0, description="Epoch milliseconds")

    @model_validator(mode="after")
    def _matching_field(self) -> Expire:
        if self.type == "TTL" and self.ttl is None:
            raise ValueError("ttl is required when type is TTL")
        if self.type == "EXPIRE_TIME" and self.expire_time is None:
            raise ValueError("expireTime is required when type is EXPIRE_TIME")
        return self


ParamValue = str | int | float | bool


class FallbackChannel(RequestModel):
    """A channel to try next, with the message to send there (default: the same message)."""

    account_id: str = Field(min_length=1, max_length=36)
    message: MessageObject | None = None


class Fallback(RequestModel):
    """Channels to try in order when a message FAILs, or is not DELIVERED within `fallbackAfterSeconds`."""

    channels: list[FallbackChannel] = Field(min_length=1, max_length=5)


class SendMessageBroadcast(RequestModel):
    """Broadcast Message: one message to one phone number (OA), conversation (BOT) or e-mail address."""

    phone: str | None = Field(default=None, max_length=32, description="Required on OA channels")
    to: str | None = Field(default=None, max_length=64, description="BOT channels: a conversation id")
    email: Mailbox | None = Field(default=None, description="EMAIL channels: the address, in place of phone")
    subject: str | None = Field(
        default=None, min_length=1, max_length=900, description="EMAIL (and MMS) channels; may hold {{name}}"
    )
    html: str | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="EMAIL channels: an HTML body sent beside the text of `message`; may hold {{name}}",
    )
    message: MessageObject
    params: dict[str, ParamValue] | None = Field(default=None, description="Values for {{name}} placeholders")
    client_message_id: str | None = Field(
        default=None, min_length=1, max_length=100, description="Idempotency key, unique per company"
    )
    request_id: str | None = Field(default=None, max_length=100)
    expire: Expire | None = None
    fallback: Fallback | None = Field(
        default=None,
        description="Channels to try next, each a message of its own (`parentMessageId`); default: the "
        "channel's `settings.fallback`",
    )
    fallback_after_seconds: int | None = Field(
        default=None,
        ge=1,
        le=604_800,
        description="Try the next channel when this message is not DELIVERED within this time (it always "
        "is tried on FAIL)",
    )


class SendConversationMessage(RequestModel):
    """Send Conversation Message: a reply to an end user, `to` = the `from` of their inbound webhook."""

    to: str = Field(min_length=1, max_length=64)
    message: MessageObject
    params: dict[str, ParamValue] | None = None
    client_message_id: str | None = Field(default=None, min_length=1, max_length=100)
    request_id: str | None = Field(default=None, max_length=100)
    expire: Expire | None = None


class BroadcastBatchRequest(RequestModel):
    """Up to 1,000 SendMessageBroadcast items; each is checked on its own."""

    messages: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


def _unset(value: object) -> bool:
    """A field that appears on the wire only when set (`email`: only answers about an address carry
    it, so the others keep the MMP API's exact shape)."""
    return value is None


class BroadcastResponseMessage(ResponseModel):
    message_id: str
    client_message_id: str
    request_id: str | None
    phone: str | None
    email: str | None = Field(default=None, description="EMAIL channels: the address", exclude_if=_unset)
    status: int = Field(description="1 PENDING, 2 SENT, 3 FAIL, 4 DELIVERED, 5 READ")
    cause: str
    application_id: int
    public_id: str = Field(description="The channel's public id (accountId)")
    created_date: int


class BatchItemErrors(ResponseModel):
    errors: list[dict[str, str]]


class BroadcastBatchResponse(ResponseModel):
    messages: list[BroadcastResponseMessage | BatchItemErrors]


class StatusError(ResponseModel):
    code: str
    message: str


class HistoryItem(ResponseModel):
    status: int
    cause: str
    timestamp: int


class FallbackLeg(ResponseModel):
    """A later message of a fallback chain."""

    message_id: str
    public_id: str = Field(description="Its channel (accountId)")
    application_id: int
    status: int
    cause: str
    timestamp: int


class ResponseStatusMessage(ResponseModel):
    message_id: str
    client_message_id: str
    phone: str | None
    email: str | None = Field(default=None, description="EMAIL channels: the address", exclude_if=_unset)
    status: int
    cause: str
    application_id: int
    public_id: str
    created_date: int
    timestamp: int = Field(description="Epoch ms of the last status change")
    error: StatusError | None = None
    history: list[HistoryItem]
    parent_message_id: str | None = Field(
        default=None, description="A fallback leg: the first message of its chain"
    )
    fallback: list[FallbackLeg] | None = Field(
        default=None, description="The first message of a fallback chain: the legs that followed, in order"
    )


class MailRecipient(RequestModel):
    """One receiver of a Send Mail, with values of its own for the placeholders."""

    email: Mailbox
    params: dict[str, ParamValue] | None = Field(default=None, description="Override the shared `params`")
    client_message_id: str | None = Field(default=None, min_length=1, max_length=100)


class SendMail(RequestModel):
    """Send Mail: one e-mail to up to 1,000 addresses, each its own message (and `messageId`)."""

    account_id: str = Field(min_length=1, max_length=36, description="The EMAIL channel's `publicId`")
    to: list[Mailbox | MailRecipient] = Field(min_length=1, max_length=1000)
    subject: str = Field(min_length=1, max_length=900, description="May hold {{name}}")
    text: str | None = Field(default=None, min_length=1, max_length=10_000, description="Plain-text body")
    html: str | None = Field(default=None, min_length=1, max_length=100_000, description="HTML body")
    params: dict[str, ParamValue] | None = Field(default=None, description="Values for {{name}} placeholders")
    request_id: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _a_body(self) -> SendMail:
        if self.text is None and self.html is None:
            raise ValueError("give text, html or both")
        return self


class MailAccepted(ResponseModel):
    message_id: str
    client_message_id: str
    email: str
    status: int = Field(description="EmailStatus: 1 PENDING")
    cause: str


class MailRefused(ResponseModel):
    email: str
    errors: list[dict[str, str]]


class SendMailResponse(ResponseModel):
    request_id: str | None
    messages: list[MailAccepted | MailRefused] = Field(description="In the order of `to`")


Identifier = Annotated[str, Field(min_length=1, max_length=100)]


class EmailStatusRequest(RequestModel):
    """Get Batch Email Status: up to 1,000 messages by `messageId` or by `clientMessageId`."""

    message_ids: list[Identifier] | None = Field(default=None, min_length=1, max_length=1000)
    client_message_ids: list[Identifier] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_kind(self) -> EmailStatusRequest:
        if (self.message_ids is None) == (self.client_message_ids is None):
            raise ValueError("give messageIds or clientMessageIds")
        return self


class EmailStatusItem(ResponseModel):
    message_id: str
    client_message_id: str
    email: str
    status: int = Field(description="EmailStatus: 1 PENDING, 2 SUCCESS (the relay took it), 3 FAIL")
    cause: str = Field(description="PENDING, SUCCESS or FAIL")
    message_status: int = Field(description="The message's own status (1 PENDING ... 5 READ, 3 FAIL)")
    error: StatusError | None = None
    timestamp: int = Field(description="Epoch ms of the last status change")


class EmailStatusResponse(ResponseModel):
    items: list[EmailStatusItem]
    not_found: list[str] = Field(description="Ids that name no e-mail of the company")
