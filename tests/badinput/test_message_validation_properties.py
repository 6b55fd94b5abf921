"""Properties of send validation (messages/schemas.py) on generated bodies, mostly well-typed, some not.

Whatever the schema accepts round-trips: dumping and validating again gives the same request, and every
text the client sent is kept as sent. Whatever it refuses is a pydantic error that renders as the api.md
error body. Through the API, on a launched Viber and Viber Bot channel: an accepted send is a 200 whose
stored message is the sent one with its placeholders filled, a refused one is a 400 with the error body
that stores nothing, and nothing is ever a 5xx.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import select
from tests.badinput.conftest import assert_error_body, signed_bot_callback, state_counts
from tests.conftest import VIBER_BOT_CREDENTIALS, Tenant

from openmmp.errors import error_response, validation_items
from openmmp.kit.time import now_ms
from openmmp.messages.rendering import render
from openmmp.messages.schemas import BroadcastResponseMessage, MessageType, SendMessageBroadcast
from openmmp.models import Conversation, Message

# ---- generated bodies ---------------------------------------------------------------------------------

# Numbers at and beyond what a BIGINT column and the JSON encoder hold.
EDGES = st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**30, 1.5e19, 1e300])
JUNK = st.one_of(
    EDGES,
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2),
)
MIXED_SCRIPTS = st.sampled_from(
    [
        "សួស្តី ពិភពលោក",
        "Tiếng Việt có dấu",
        "Tie\u0302\u0301ng Vie\u0323\u0302t",
        "สวัสดีครับ",
        "👩\u200d👩\u200d👧\u200d👦 👋🏽 🇰🇭",
        "مرحبا \u200fשלום\u200e",
        "  spaces kept  ",
        "line\r\nbreak\ttab",
    ]
)
TEXTS = st.one_of(st.text(max_size=40), MIXED_SCRIPTS, st.just("Hello {{name}}, code {{code}}"))
PHONES = st.sampled_from(["85512345670", "+855 12 345 671", "012 345 672", "0012345", "+1", "abc", ""])
URLS = st.sampled_from(["https://example.com/a.png", "http://example.com/f.pdf", "not a url", ""])


def mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually `strategy`, sometimes a value of the wrong type."""
    return st.one_of(strategy, strategy, strategy, JUNK)


SUGGESTION = st.fixed_dictionaries(
    {
        "action": mostly(st.sampled_from(["open-url", "reply", "dial", "VIEW_LOCATION", "nope"])),
        "text": mostly(st.text(max_size=30)),
    },
    optional={"postbackData": mostly(URLS)},
)
RICH_CARD = st.fixed_dictionaries(
    {},
    optional={
        "title": mostly(TEXTS),
        "description": mostly(TEXTS),
        "image": mostly(URLS),
        "suggestions": mostly(st.lists(SUGGESTION, max_size=2)),
    },
)
MESSAGE = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from([t.value for t in MessageType]) | st.just("text"))},
    optional={
        "message": mostly(TEXTS),
        "suggestions": mostly(st.lists(SUGGESTION, max_size=2)),
        "fileUrl": mostly(URLS),
        "fileName": mostly(st.sampled_from(["a.pdf", "ảnh.png", "x" * 300])),
        "fileSize": mostly(st.integers(-1, 10**9) | EDGES),
        "thumbnailUrl": mostly(URLS),
        "richCards": mostly(st.lists(RICH_CARD, max_size=3)),
        "location": mostly(
            st.fixed_dictionaries({"latitude": st.floats(-100, 100), "longitude": st.floats(-200, 200)})
        ),
        "whatsappInteractive": mostly(st.dictionaries(st.text(max_size=5), TEXTS, max_size=2)),
    },
)
PARAMS = st.dictionaries(
    st.sampled_from(["name", "code", "other"]),
    st.one_of(TEXTS, st.integers(-(10**6), 10**6), st.booleans(), st.floats(-1e6, 1e6), EDGES),
    max_size=3,
)
EXPIRE = st.one_of(
    st.fixed_dictionaries({"type": st.just("TTL"), "ttl": mostly(st.integers(-5, 2_000_000))}),
    st.fixed_dictionaries(
        {"type": st.just("EXPIRE_TIME")}, optional={"expireTime": mostly(st.integers(0, 2**62))}
    ),
)
ANYTHING = st.fixed_dictionaries(
    {"message": mostly(MESSAGE)},
    optional={
        "phone": mostly(PHONES),
        "params": mostly(PARAMS),
        "clientMessageId": mostly(st.text(min_size=1, max_size=8)),
        "requestId": mostly(st.text(max_size=8)),
        "expire": mostly(EXPIRE),
        "unknownField": JUNK,
    },
)
# Sends a launched Viber or Viber Bot channel takes: text to a valid phone, every placeholder given.
SENDABLE = st.fixed_dictionaries(
    {
        "phone": st.sampled_from(["85512345670", "+855 12 345 670", "012 345 670", "855-12-345-670"]),
        "message": st.fixed_dictionaries(
            {"type": st.just("text"), "message": st.one_of(st.text(min_size=1, max_size=200), MIXED_SCRIPTS)}
        )
        | st.builds(lambda: {"type": "text", "message": "Hello {{name}}, code {{ code }}"}),
        "params": st.fixed_dictionaries(
            {
                "name": st.one_of(TEXTS, MIXED_SCRIPTS),
                "code": st.one_of(st.integers(0, 10**6), st.booleans(), EDGES),
            }
        ),
    },
    optional={
        "clientMessageId": st.just("fresh"),
        "requestId": st.text(max_size=20),
        "expire": st.fixed_dictionaries({"type": st.just("TTL"), "ttl": st.integers(1, 1_209_600)}),
    },
)


@st.composite
def one_flaw(draw: st.DrawFn) -> dict[str, Any]:
    """A sendable body with one field (top-level or in `message`) replaced by junk."""
    body = draw(SENDABLE)
    where = draw(st.sampled_from(["top", "message"]))
    target = body if where == "top" else body["message"]
    key = draw(st.sampled_from([*sorted(target), "extra"]))
    target[key] = draw(JUNK)
    return body


BODIES = st.one_of(SENDABLE, one_flaw(), ANYTHING)


def dump(request: SendMessageBroadcast) -> dict[str, Any]:
    """The request as the service stores and hashes it."""
    return request.model_dump(mode="json", by_alias=True, exclude_none=True)


def strings(value: Any, path: str = "") -> dict[str, str]:
    """Every string leaf of a JSON value by its path."""
    if isinstance(value, str):
        return {path: value}
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in strings(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in strings(item, f"{path}[{i}]").items()}
    return {}


# ---- the schema on its own ------------------------------------------------------------------------------


class TestSchema:
    @settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
    @given(body=BODIES)
    def test_accepted_bodies_round_trip_and_refused_ones_render_as_the_error_body(self, body: dict[str, Any]):
        try:
            request = SendMessageBroadcast.model_validate(body)
        except ValidationError as exc:
            items = validation_items(exc.errors())
            assert items
            assert all(item.name and item.message for item in items)
            response = error_response(400, items)
            assert list(orjson.loads(bytes(response.body))) == ["errors"]
            return
        dumped = dump(request)
        again = SendMessageBroadcast.model_validate(dumped)
        assert again == request
        assert dump(again) == dumped
        # What is hashed for idempotency and stored must encode.
        orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)
        # Texts are kept as sent: no trimming, no Unicode normalisation.
        sent = strings(body)
        kept = strings(dumped)
        assert {path: text for path, text in sent.items() if path in kept} == {
            path: kept[path] for path in sent if path in kept
        }
        assert "unknownField" not in body


# ---- through the API -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def bot_conversation(bad_app: Any, bad_client: httpx.AsyncClient, bot_channel: dict[str, Any]) -> str:
    """A Viber Bot end user who wrote to the bot (and shared a phone): the `to` of replies."""
    account = bot_channel["publicId"]
    token = VIBER_BOT_CREDENTIALS["authToken"]
    sender = {"id": "validation-user", "name": "Dara", "avatar": "", "country": "KH", "language": "km"}
    for number, message in enumerate(
        [
            {"type": "contact", "contact": {"name": "Dara", "phone_number": "85512345670"}},
            {"type": "text", "text": "hi"},
        ]
    ):
        body = {
            "event": "message",
            "timestamp": now_ms() + number,
            "message_token": 9_000_000 + number,
            "sender": sender,
            "message": message,
        }
        raw, headers = signed_bot_callback(body, token)
        response = await bad_client.post(f"/callbacks/viber-bot/{account}", content=raw, headers=headers)
        assert response.status_code == 200, response.text
    async with bad_app.state.db.read_sessions() as session:
        conversation = (
            await session.execute(select(Conversation).where(Conversation.external_id == "validation-user"))
        ).scalar_one()
    return conversation.public_id


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=BODIES, on_bot=st.booleans(), by_conversation=st.booleans())
async def test_sends_are_a_stored_200_or_a_400_that_stores_nothing(
    body: dict[str, Any],
    on_bot: bool,
    by_conversation: bool,
    bad_app: Any,
    bad_client: httpx.AsyncClient,
    bad_tenant: Tenant,
    viber_channel: dict[str, Any],
    bot_channel: dict[str, Any],
    bot_conversation: str,
) -> None:
    body = copy.deepcopy(body)
    if isinstance(body.get("clientMessageId"), str):
        body["clientMessageId"] = str(uuid.uuid4())  # a fresh key: a repeat would be a 409 by design
    if on_bot and by_conversation:
        body["to"] = bot_conversation
    account = (bot_channel if on_bot else viber_channel)["publicId"]
    before = await state_counts(bad_app)

    response = await bad_client.post(
        f"/api/v1/channel/{account}/broadcast", json=body, headers=bad_tenant.headers
    )

    after = await state_counts(bad_app)
    if response.status_code != 200:
        assert_error_body(response, 400)
        assert after == before
        return
    answer = BroadcastResponseMessage.model_validate(response.json())
    assert after["messages"] == before["messages"] + 1
    request = SendMessageBroadcast.model_validate(body)
    assert answer.client_message_id == (request.client_message_id or answer.client_message_id)
    async with bad_app.state.db.read_sessions() as session:
        stored = (
            await session.execute(select(Message).where(Message.public_id == answer.message_id))
        ).scalar_one()
    assert stored.content == render(dump(request)["message"], request.params)
    status = await bad_client.get(f"/api/v1/message/{answer.message_id}/status", headers=bad_tenant.headers)
    assert status.status_code == 200, status.text
    assert status.json()["phone"] == answer.phone
    assert status.json()["clientMessageId"] == answer.client_message_id
    # The same body again is the same answer and stores nothing (idempotency by clientMessageId).
    if request.client_message_id is not None:
        replay = await bad_client.post(
            f"/api/v1/channel/{account}/broadcast", json=body, headers=bad_tenant.headers
        )
        assert replay.status_code == 200, replay.text
        assert replay.json()["messageId"] == answer.message_id
        assert await state_counts(bad_app) == after
