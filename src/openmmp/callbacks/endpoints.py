"""Where providers call back. Public by construction: proven by the upstream's signature, not an API key.

One route shape for every provider: `POST /callbacks/{provider}/{accountId}` carries events, `GET` answers
an upstream's verification handshake where it has one. An upstream that posts every account's callbacks
to one URL (`Provider.routes_by_account`: Apple's MSP endpoint) also has `POST /callbacks/{provider}`,
where the channel is the one holding the account the request names. How each provider proves a callback
is its own.
"""

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from openmmp.callbacks.batching import CallbackReceiver
from openmmp.errors import BadRequest, responses
from openmmp.kit.direct import DirectRoute
from openmmp.kit.schemas import AccountId, ResponseModel
from openmmp.providers.base import CallbackRejected, CallbackRequest
from openmmp.providers.registry import REGISTRY

router = APIRouter(prefix="/callbacks", tags=["Callbacks"], route_class=DirectRoute)

_PROVIDERS = "\n".join(f"- `{p.name}`: {p.title}. {p.callback_auth}" for p in REGISTRY.providers)
ProviderName = Annotated[
    str,
    Path(
        description="The provider's name: " + ", ".join(f"`{p.name}`" for p in REGISTRY.providers),
        examples=[REGISTRY.providers[0].name],
    ),
]


class CallbackAck(ResponseModel):
    status: str
    outcome: str


async def _request(request: Request) -> CallbackRequest:
    return CallbackRequest(
        method=request.method,
        headers={name.lower(): value for name, value in request.headers.items()},
        query=dict(request.query_params),
        body=await request.body(),
    )


@router.post(
    "/{provider}/{accountId}",
    summary="Provider callbacks (delivery reports, inbound messages, channel and template events)",
    description="Each provider proves its callbacks its own way:\n\n"
    + _PROVIDERS
    + "\n\nThe answer is a CallbackAck, except for upstreams that expect one in their own protocol (as "
    "said above).",
    response_model=CallbackAck,
    responses=responses(400, 401, 404, 413),
)
async def callback(provider: ProviderName, account_id: AccountId, request: Request) -> Response:
    return await _received(provider, account_id, await _request(request), request)


_ROUTED = ", ".join(f"`{p.name}`" for p in REGISTRY.providers if p.routes_by_account)


@router.post(
    "/{provider}",
    summary="Provider callbacks to the upstream's one URL",
    description=f"For upstreams that post every account's callbacks to one URL ({_ROUTED}): the channel is "
    "the one holding the account the request names (Apple: `Destination-Id`, the channel's `businessId`), "
    "and the request is then proven and handled as on `/callbacks/{provider}/{accountId}`. 404 for another "
    "provider, or an account no channel holds.",
    response_model=CallbackAck,
    responses=responses(400, 401, 404, 413),
)
async def routed_callback(provider: ProviderName, request: Request) -> Response:
    receiver: CallbackReceiver = request.app.state.callbacks
    received = await _request(request)
    return await _received(provider, await receiver.account_of(provider, received), received, request)


async def _received(provider: str, account_id: str, received: CallbackRequest, request: Request) -> Response:
    receiver: CallbackReceiver = request.app.state.callbacks
    try:
        outcome = await receiver.receive(provider, account_id, received)
    except CallbackRejected as exc:
        raise BadRequest(str(exc), name="body") from exc
    upstream = REGISTRY.by_name(provider)
    reply = upstream.acknowledge(received, outcome) if upstream is not None else None
    if reply is not None:
        return Response(content=reply.body, status_code=reply.status_code, media_type=reply.media_type)
    # Two or three callbacks come per message sent: the body is written directly (it is a CallbackAck,
    # as documented), without a validation round through the model on each one.
    return Response(orjson.dumps({"status": "ok", "outcome": outcome}), media_type="application/json")


@router.get(
    "/{provider}/{accountId}",
    summary="Provider verification handshake",
    description="For upstreams that verify a callback URL with a GET (e.g. a `hub.challenge` echo); "
    "405 for the others.",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **responses(401, 404, 405)},
)
async def handshake(provider: ProviderName, account_id: AccountId, request: Request) -> Response:
    receiver: CallbackReceiver = request.app.state.callbacks
    reply = await receiver.challenge(provider, account_id, await _request(request))
    return Response(content=reply.body, status_code=reply.status_code, media_type=reply.media_type)
