"""Zalo Notification Service (ZNS, now "ZBS Template Message" by phone) on the provider contract.

A channel is a Zalo Official Account (`oaId`) acting through its Zalo app (`appId`, `secretKey`) with the
OAuth v4 tokens the OA granted the app (`zalo.credentials`, shared with the Zalo OA channel). It sends
templates Zalo approved to phone numbers (`zns_payload`): one `POST {business}/message/template` per
message, its `tracking_id` the message's internal key, which Zalo collapses when repeated
(`idempotent`). Zalo answers `msg_id` and the OA's daily quota left; a `user_received_message` webhook
later says the phone got it (DELIVERED). ZNS tells nothing of reading (`reports_read` False), and end
users do not write to a ZNS channel (`receives_messages` False).

Zalo refuses with codes (`zalo.errors`): among them -144 when the OA's daily quota is used up and
-234/-133 for a promotional template outside 07:00-22:00 Vietnam time, both final; -216/-220/-124 when the
access token expired, after which the core renews the tokens (`refresh_credentials`, shared
`zalo.auth`) and sends again.

Zalo reviews templates (`zns_templates`, verdicts in `change_template_status` webhooks parsed by
`zns_callbacks`), and an OA may ask a user's consent to call them (`zns_consent`).

Webhooks are signed with the app's secret key (`zalo.webhooks.verify_zalo`); Zalo takes the webhook URL
in its developer console, so outside sandbox mode there is nothing to set up. In sandbox mode the set-up
tells the simulator (`zns_simulator`) where the OA's webhooks go, as the console would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    Consent,
    Link,
    Outgoing,
    ProviderContext,
    ProviderError,
    SendOk,
    SendUnit,
    TemplateReview,
    one_unit_each,
)
from openmmp.providers.upstream import bad_response
from openmmp.providers.zalo import zns_callbacks, zns_consent, zns_templates
from openmmp.providers.zalo.app import ZaloApp
from openmmp.providers.zalo.credentials import (
    DEFAULT_BUSINESS_URL,
    zalo_hosts,
)
from openmmp.providers.zalo.errors import call_zalo
from openmmp.providers.zalo.zns_payload import send_body, template_param

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig

SEND_PATH = "/message/template"


class ZaloZnsProvider(ZaloApp):
    name = "zalo-zns"
    application = Application.ZALO_ZNS
    title = "Zalo Notification Service"
    message_types = frozenset({"zalo_zns_template"})
    example_message = {
        "type": "zalo_zns_template",
        "zaloZnsTemplateParam": {
            "templateId": "100001",
            "templateData": {"customer_name": "Dara", "order_code": "4711"},
        },
    }
    idempotent = True
    addressing = Addressing.PHONE
    default_base_url = DEFAULT_BUSINESS_URL
    callback_auth = ZaloApp.callback_auth + " ZNS events also carry `X-ZEvent-Server: ZNS`."
    receives_messages = False
    reports_read = False
    sandbox_credentials = {
        "oaId": "1002",
        "appId": "1002",
        "accessToken": "demo",
        "refreshToken": "demo",
        "secretKey": "demo",
    }
    reviews_templates = True
    template_model = zns_templates.ZaloZnsFormCreateTemplateMessage
    asks_consent = True
    consent_path = "zalo"
    consent_request_model = zns_consent.ZaloRequestConsentRequest
    consent_answer_model = zns_consent.ZaloRequestConsentResponse
    consent_status_model = zns_consent.ZaloCheckConsentResponse

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        template_param(content)

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        url = f"{zalo_hosts(ctx).business}{SEND_PATH}"
        token = str(credentials["accessToken"])

        async def send(message: Outgoing) -> SendOk:
            try:
                body = send_body(message.recipient, message.content, message.key)
            except ValueError as exc:
                # Checked when accepted; failing now means it can never be sent as it is.
                raise ProviderError("ZALO_ZNS_INVALID_MESSAGE", str(exc), retryable=False) from exc
            data = await call_zalo(ctx, "POST", url, access_token=token, json=body)
            msg_id = data.get("msg_id")
            if isinstance(msg_id, int) and not isinstance(msg_id, bool):
                msg_id = str(msg_id)
            if not isinstance(msg_id, str) or not msg_id:
                raise bad_response("Zalo accepted the message but named no msg_id")
            return SendOk(provider_message_id=msg_id)

        return one_unit_each(outgoing, send)

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return zns_callbacks.parse_callback(body)

    async def submit_template(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], template: Mapping[str, Any]
    ) -> TemplateReview:
        return await zns_templates.submit(ctx, credentials, template)

    async def edit_template(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        template_id: str,
        template: Mapping[str, Any],
    ) -> TemplateReview:
        return await zns_templates.edit(ctx, credentials, template_id, template)

    async def delete_template(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        template_id: str,
        template: Mapping[str, Any],
    ) -> None:
        # Zalo's API deletes no template (only the OA's admin can, in Zalo's console): the platform's
        # copy goes, and Zalo's stays unused (`zns_templates`).
        return None

    def template_variables(self, template: Mapping[str, Any]) -> list[str]:
        return zns_templates.variables(template)

    def template_message(
        self, template: Mapping[str, Any], params: Mapping[str, str], *, template_id: str
    ) -> dict[str, Any]:
        return zns_templates.message(template, params, template_id)

    async def request_consent(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phone: str, request: Mapping[str, Any]
    ) -> Consent:
        return await zns_consent.request(ctx, credentials, phone, request)

    async def consent_status(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], phone: str
    ) -> Consent:
        return await zns_consent.status(ctx, credentials, phone)

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.zalo.zns_simulator import create_zns_simulator

        return create_zns_simulator(config, http, name=self.name)
