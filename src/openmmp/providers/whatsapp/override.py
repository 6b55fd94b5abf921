"""Meta's webhook override: a business phone number's own callback URL, set by the channel's set-up.

Meta sends an app's webhooks to the app's one callback URL, while OpenMMP's callback route is the
channel's: `{public_url}/callbacks/whatsapp/{accountId}`. An override gives one number an alternate URL
for its `messages` webhooks (statuses and end users' messages; template decisions still go to the app's
URL): `POST /{phone_number_id} {"webhook_configuration": {"override_callback_uri", "verify_token"}}`
with the channel's token, answered `{"success": true}`. Before it answers, Meta checks the URL with the
GET handshake (`hub.mode=subscribe`, `hub.verify_token`, `hub.challenge`), which the callback route
answers with the challenge when the token is the channel's verify token (`callbacks`); the URL must be
https and at most 200 characters.

Only channels that ask for it (`webhookOverride`, which onboarding sets) get one: setting it needs a token
with the `whatsapp_business_management` permission on the number's account, which a token made by hand
for sending may lack, and a business that configured its app's callback URL itself needs none. Setting it
again is harmless, so it is set at every start, like every set-up.

How Meta's refusals end (`override_error`): a permission error (10, 200-299) and a verification that our
route answered wrongly (a challenge that does not match, an HTTP 4xx) are final, with a cause that says
what to fix; a verification that got no answer (no connection, a timeout, an HTTP 5xx) is tried again,
since set-up re-runs at every start and the platform may not be reachable yet. That split reads Meta's
words for error 2200 ("Response does not match challenge", "HTTP Status Code = 404"), which are not a
documented format: words it does not recognise are tried again, and a channel still PROCESSING is
rejected with them once the set-up's attempts run out.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from openmmp.kit.http import HttpClient
from openmmp.providers.base import ProviderError
from openmmp.providers.upstream import bad_response
from openmmp.providers.whatsapp.callbacks import callback_verify_token
from openmmp.providers.whatsapp.client import GraphClient

CALLBACK_UNVERIFIED = 2200
"""Meta's code for a callback URL whose GET handshake failed."""
PERMISSION_CODES = frozenset({10, *range(200, 300)})
"""Graph API permission errors: the token may not do this to that object."""
CAUSE_MAX = 480
"""Longest cause (the set-up job keeps 500 characters of `code: cause`)."""
_ANSWERED_STATUS = re.compile(r"HTTP Status Code = ([1-9]\d\d)\b")


async def set_override(
    http: HttpClient,
    base_url: str,
    *,
    phone_number_id: str,
    access_token: str,
    app_secret: str,
    callback_url: str,
) -> None:
    """Have Meta send the number's `messages` webhooks to `callback_url`, proven by the channel's verify
    token. Raises `ProviderError`, classified as the module's docstring says."""
    body = {
        "webhook_configuration": {
            "override_callback_uri": callback_url,
            "verify_token": callback_verify_token(app_secret),
        }
    }
    client = GraphClient(http, base_url)
    try:
        answer = await client.post(quote(phone_number_id, safe=""), token=access_token, body=body)
    except ProviderError as exc:
        explained = override_error(exc, callback_url=callback_url)
        if explained is None:
            raise
        raise explained from exc
    if answer.get("success") is not True:
        raise bad_response("Meta answered the webhook override without success: true")


def override_error(exc: ProviderError, *, callback_url: str) -> ProviderError | None:
    """A refused override (`exc`, as `errors` classified it) with a cause the operator can act on, and
    the verdict the module's docstring gives; None when `errors`' own says all there is to say."""
    code = exc.code.removeprefix("WHATSAPP_")
    if not code.isdigit():
        return None
    number = int(code)
    if number in PERMISSION_CODES:
        cause = (
            "the channel's accessToken may not set the phone number's webhook override: it needs the "
            "whatsapp_business_management permission on the number's WhatsApp Business account. Give the "
            "channel a token that has it, or set webhookOverride to false and point the Meta app's "
            f"callback URL at {callback_url} by hand (Meta: {exc.message})"
        )
        return ProviderError(exc.code, cause[:CAUSE_MAX], retryable=False)
    if number == CALLBACK_UNVERIFIED:
        answered = _answered_wrongly(exc.message)
        why = (
            "it answered, but not with Meta's challenge: check that OPENMMP_PUBLIC_URL is where Meta "
            "reaches this platform (https)"
            if answered
            else "it did not answer, or failed (the platform may still be starting)"
        )
        cause = (
            f"Meta could not verify the channel's callback URL {callback_url} for the webhook override: "
            f"{why} (Meta: {exc.message})"
        )
        return ProviderError(exc.code, cause[:CAUSE_MAX], retryable=not answered)
    return None


def _answered_wrongly(words: str) -> bool:
    """Whether Meta's words for a failed handshake say our URL answered, but wrongly."""
    if "does not match challenge" in words.lower():
        return True
    status = _ANSWERED_STATUS.search(words)
    return status is not None and 400 <= int(status.group(1)) < 500
