"""WhatsApp Business Platform (Cloud API) on the provider contract (providers.md §3).

A channel is one business phone number (`phoneNumberId`) of a WhatsApp Business account, sending with a
system-user or business token (`accessToken`). End users are reached by phone number, or, replying, by
the conversation their message opened (its id is their `wa_id`). One request per message
(`payload`, `client`); the Cloud API has no idempotency key. Free-form messages go only within 24 hours
of the end user's last message (`session_window_seconds`): the core refuses the others when they are
sent, and the Cloud API's 131047 fails those it cannot see (`errors`).

Webhooks come to `{public_url}/callbacks/whatsapp/{accountId}`, signed with the app secret
(`callbacks`). In sandbox mode the set-up registers that URL and the app secret with the simulator.
Outside it, a channel whose credentials ask for it (`webhookOverride`) has its set-up give the number
that URL as Meta's webhook override (`override`); for the others the business sets the callback URL and
the channel's verify token in its Meta app (README), and their set-up asks nothing of Meta. Either way
every channel has a set-up (`needs_setup` cannot see credentials): it starts PROCESSING and is launched
when the set-up succeeds.

A company may instead hand its number to the operator's Meta app through Embedded Signup (`onboarding`):
the channel is then made from what the sign-up produced, with the operator's app secret, and asks for
the override.

Meta reviews templates (`reviews_templates`): a company's goes to the channel's WhatsApp Business
account in Meta's form (`templates`: the form, its rules, which parameters a send gives and the
`fb_whatsapp_template` message that sends it), and Meta's verdict comes back as a
`message_template_status_update` webhook, as does Meta's own change of an approved template's category
(`template_category_update`). A template may be edited (in place, or replaced by a new one when its
name or language changes) and deleted. Meta sends those webhooks to the app's callback URL, not to a
number's override, so they reach whichever channel the business pointed its app at: any channel of the
account.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    Credentials,
    Ident,
    Link,
    Outgoing,
    ProviderContext,
    RateLimit,
    SandboxUser,
    SandboxWritten,
    Secret,
    SendUnit,
    TemplateReview,
    one_unit_each,
)
from openmmp.providers.meta.webhooks import MetaAppProvider
from openmmp.providers.simulation import sandbox_control, sandbox_inbound
from openmmp.providers.whatsapp import callbacks, templates
from openmmp.providers.whatsapp.client import WhatsappClient
from openmmp.providers.whatsapp.onboarding import (
    SANDBOX_APP_SECRET,
    WhatsappOptions,
    complete_signup,
    signup_url,
)
from openmmp.providers.whatsapp.override import set_override
from openmmp.providers.whatsapp.payload import to_whatsapp_payload

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig


class WhatsappCredentials(Credentials):
    """A business phone number of a WhatsApp Business account, and the Meta app that acts for it.

    `webhookOverride`: the channel's set-up makes Meta send the number's webhooks to the channel's
    callback URL (Meta's webhook override), which needs a token that may manage the number; without it
    the business points its app's callback URL at the channel itself.
    """

    identity_fields = ("phone_number_id",)

    phone_number_id: str = Ident
    waba_id: str = Ident
    access_token: str = Secret
    app_secret: str = Secret
    webhook_override: bool = Field(
        default=False,
        description="Outside sandbox mode, the channel's set-up sets the number's webhook override to the "
        "channel's callback URL (the token needs whatsapp_business_management); onboarded channels have it",
    )


class WhatsappProvider(MetaAppProvider):
    name = "whatsapp"
    application = Application.WHATSAPP
    title = "WhatsApp Business (Cloud API)"
    message_types = frozenset(
        {"text", "picture", "video", "file", "location", "fb_whatsapp_template", "FB_WHATSAPP_INTERACTIVE"}
    )
    # The one message that reaches anybody: a template (Meta's own sample), outside any window.
    example_message = {
        "type": "fb_whatsapp_template",
        "whatsappTemplateParam": {"templateId": "hello_world", "language": "en_US"},
    }
    rate_limit = RateLimit(requests=80, window_seconds=1.0, per="phone number")
    # Meta's pair rate is about 45 at once, then one per 6 s: a little below, so no 131056 comes back.
    recipient_rate = RateLimit(requests=1, window_seconds=6.0, per="recipient")
    recipient_burst = 40
    idempotent = False
    addressing = Addressing.BOTH
    credentials_model = WhatsappCredentials
    options_model = WhatsappOptions
    default_base_url = "https://graph.facebook.com/v21.0"
    verify_token_label = callbacks.VERIFY_TOKEN_PURPOSE
    reports_read = True
    session_window_seconds = 86400.0
    window_free_types = frozenset({"fb_whatsapp_template"})
    onboarding = True
    reviews_templates = True
    template_model = templates.WhatsappFormCreateTemplateMessage
    # The demo number stands for one onboarded through the sandbox's own Meta app: its webhooks are
    # signed with that app's published secret, as those of every number onboarded in sandbox mode are.
    sandbox_credentials = {
        "phoneNumberId": "1001",
        "wabaId": "1001",
        "accessToken": "demo-token",
        "appSecret": SANDBOX_APP_SECRET,
    }

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        to_whatsapp_payload(content)

    def needs_setup(self, *, sandbox: bool) -> bool:
        # Outside sandbox mode only channels with webhookOverride ask Meta anything, and which those are
        # cannot be seen from here: every channel gets a set-up, which does nothing for the others.
        return True

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        if ctx.sandbox:
            body = {
                "phoneNumberId": str(credentials["phoneNumberId"]),
                "wabaId": str(credentials["wabaId"]),
                "callbackUrl": callback_url,
                "appSecret": str(credentials["appSecret"]),
            }
            await sandbox_control(ctx.http, f"{ctx.base_url}/_sandbox/webhooks", body, simulator=self.title)
        elif credentials.get("webhookOverride") is True:
            await set_override(
                ctx.http,
                ctx.base_url,
                phone_number_id=str(credentials["phoneNumberId"]),
                access_token=str(credentials["accessToken"]),
                app_secret=str(credentials["appSecret"]),
                callback_url=callback_url,
            )

    def onboarding_url(self, ctx: ProviderContext, *, state: str, redirect_url: str) -> str:
        return signup_url(ctx, state=state, redirect_url=redirect_url)

    async def complete_onboarding(
        self, ctx: ProviderContext, answer: Mapping[str, str], *, redirect_url: str
    ) -> dict[str, Any]:
        return await complete_signup(ctx, answer, redirect_url=redirect_url)

    async def submit_template(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], template: Mapping[str, Any]
    ) -> TemplateReview:
        return await templates.submit(ctx.http, ctx.base_url, credentials, template)

    async def edit_template(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        template_id: str,
        template: Mapping[str, Any],
    ) -> TemplateReview:
        return await templates.edit(ctx.http, ctx.base_url, credentials, template_id, template)

    async def delete_template(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        template_id: str,
        template: Mapping[str, Any],
    ) -> None:
        await templates.delete(ctx.http, ctx.base_url, credentials, template_id, template)

    def template_variables(self, template: Mapping[str, Any]) -> list[str]:
        return templates.variables(template)

    def template_message(
        self, template: Mapping[str, Any], params: Mapping[str, str], *, template_id: str
    ) -> dict[str, Any]:
        # Meta sends a template by its name and language, which the form holds.
        return templates.message(template, params)

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        client = WhatsappClient(
            ctx.http,
            ctx.base_url,
            phone_number_id=str(credentials["phoneNumberId"]),
            access_token=str(credentials["accessToken"]),
        )
        return one_unit_each(outgoing, lambda message: client.send(message.recipient, message.content))

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return callbacks.parse_callback(body)

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.whatsapp.simulator import create_whatsapp_simulator

        return create_whatsapp_simulator(config, http)

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        if not user.phone:
            raise ValueError("phone: required: a WhatsApp user writes from their phone number")
        body = {
            "phoneNumberId": str(credentials["phoneNumberId"]),
            "from": user.phone,
            "name": user.name,
            "text": user.text,
        }
        answer = await sandbox_inbound(ctx, body, simulator=self.title)
        return SandboxWritten(
            user_id=str(answer.get("waId", "")), message_token=str(answer.get("messageId", ""))
        )
