"""Where providers call back. Public by construction: proven by the upstream's signature, not an API key."""

from fastapi import APIRouter, Request

from openmmp.callbacks.batching import CallbackReceiver
from openmmp.callbacks.service import Provider
from openmmp.errors import BadRequest, responses
from openmmp.kit.schemas import ResponseModel
from openmmp.providers.base import CallbackRejected

router = APIRouter(prefix="/callbacks", tags=["Callbacks"])


class CallbackAck(ResponseModel):
    status: str
    outcome: str


async def _handle(provider: Provider, account_id: str, request: Request) -> CallbackAck:
    raw = await request.body()
    receiver: CallbackReceiver = request.app.state.callbacks
    try:
        outcome = await receiver.receive(
            provider, account_id, raw, request.headers.get("x-viber-content-signature")
        )
    except CallbackRejected as exc:
        raise BadRequest(str(exc), name="body") from exc
    return CallbackAck(status="ok", outcome=outcome)


@router.post(
    "/viber-bot/{account_id}",
    summary="Viber Bot callbacks (set as the bot's webhook)",
    description="Signed with `X-Viber-Content-Signature`: HMAC-SHA256 of the raw body, keyed by bot token.",
    response_model=CallbackAck,
    responses=responses(400, 401, 404, 413),
)
async def viber_bot_callback(account_id: str, request: Request) -> CallbackAck:
    return await _handle("viber-bot", account_id, request)


@router.post(
    "/viber/{account_id}",
    summary="Viber Business Messages callbacks",
    description="Signed with `X-Viber-Content-Signature` keyed by the operator's Viber callback secret.",
    response_model=CallbackAck,
    responses=responses(400, 401, 404, 413),
)
async def viber_callback(account_id: str, request: Request) -> CallbackAck:
    return await _handle("viber", account_id, request)
