"""What Apple posts to the MSP, read: compressed or not (never inflated past a bound), and what it means."""

from __future__ import annotations

import gzip
import tracemalloc
from typing import Any

import orjson
import pytest

from openmmp.providers.apple.callbacks import INFLATED_MAX_BYTES, inflate
from openmmp.providers.apple.payload import ATTACHMENT_MARK, BID
from openmmp.providers.apple.provider import AppleProvider
from openmmp.providers.base import CallbackRejected, CallbackRequest, Contact, InboundEvent

PROVIDER = AppleProvider()
USER = (
    "urn:mbid:AQAAY45PVG4jg/ni/q6rWSYuu9d7Ga6K22bxp0iUmPkdOwxr3yAbisjOmtYFzw6LjDqhABFFHD/nFz6S2U5rBEcSqO7Eg0B"
)
BUSINESS = "a884eddf-3a1f-4b1e-9b64-2f43a5a0b0c1"


def apple_body(
    kind: str, message_id: str = "8c35e8f6-0c5e-4d0c-9e0c-7b2bfb6c2b01", **fields: Any
) -> dict[str, Any]:
    return {"v": 1, "id": message_id, "sourceId": USER, "destinationId": BUSINESS, "type": kind, **fields}


def readable(raw: bytes) -> bytes:
    """The body as the core hands it to `parse`: inflated when Apple compressed it."""
    return PROVIDER.readable_body(CallbackRequest("POST", {"content-encoding": "gzip"}, {}, raw))


def events(body: dict[str, Any], *, compress: bool = False) -> list[InboundEvent]:
    raw = orjson.dumps(body)
    parsed = PROVIDER.parse(readable(gzip.compress(raw) if compress else raw))
    assert all(isinstance(event, InboundEvent) for event in parsed)
    return parsed  # type: ignore[return-value]


def one(body: dict[str, Any]) -> InboundEvent:
    [event] = events(body)
    return event


class TestCompression:
    def test_plain_and_gzip_bodies_mean_the_same(self):
        body = apple_body("text", body="Is my card ready? ស្រី 🙂", locale="km_KH")
        plain, compressed = events(body), events(body, compress=True)
        assert [(e.kind, e.message, e.dedupe_key) for e in plain] == [
            (e.kind, e.message, e.dedupe_key) for e in compressed
        ]

    def test_several_gzip_members_are_one_body(self):
        raw = orjson.dumps(apple_body("text", body="two members"))
        joined = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
        assert inflate(joined) == raw

    @pytest.mark.parametrize(
        "raw",
        [
            gzip.compress(b'{"v": 1}')[:-6],
            gzip.compress(b'{"v": 1}')[:12],
            gzip.compress(b'{"v": 1}') + b"trailing junk",
            b"\x1f\x8b\x08\x00garbage",
        ],
        ids=["cut-short", "header-only", "trailing-junk", "corrupt"],
    )
    def test_a_broken_stream_is_rejected(self, raw: bytes):
        with pytest.raises(CallbackRejected):
            readable(raw)

    def test_a_body_inflating_past_the_bound_is_rejected_without_holding_it(self):
        bomb = gzip.compress(b" " * (64 * 1024 * 1024), compresslevel=9)
        assert len(bomb) < 100 * 1024
        tracemalloc.start()
        try:
            with pytest.raises(CallbackRejected, match="inflates to more than"):
                readable(bomb)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * INFLATED_MAX_BYTES

    def test_a_body_just_under_the_bound_is_read(self):
        text = "x" * (INFLATED_MAX_BYTES - 300)
        [event] = events(apple_body("text", body=text), compress=True)
        assert event.message["message"] == text


class TestMeaning:
    def test_text_is_an_inbound_text_from_the_opaque_id(self):
        body = apple_body("text", body="hello", locale="en_US")
        event = one(body)
        assert event.kind == "message"
        assert event.contact == Contact(id=USER, language="en", country="US")
        assert event.message == {"type": "text", "message": "hello", "extra": body}
        assert event.raw == body
        assert event.dedupe_key == "8c35e8f6-0c5e-4d0c-9e0c-7b2bfb6c2b01:text"

    def test_attachments_are_described_and_their_marks_left_out_of_the_text(self):
        attachment = {
            "name": "receipt.jpg",
            "mimeType": "image/jpeg",
            "size": 20480,
            "signature-base64": "c2ln",
            "url": "https://p1.mmcs.example/f",
            "owner": "owner",
            "key": "00" + "ab" * 32,
        }
        body = apple_body("text", body=f"Here {ATTACHMENT_MARK}", attachments=[attachment])
        event = one(body)
        assert event.message["type"] == "text_with_attachment"
        assert event.message["message"] == "Here"
        assert event.message["attachments"] == [{"type": "image/jpeg", "name": "receipt.jpg", "size": 20480}]
        assert event.message["extra"]["attachments"] == [attachment]

    def test_a_list_picker_answer_is_the_picked_values(self):
        interactive = {
            "bid": BID,
            "data": {
                "version": "1.0",
                "requestIdentifier": "f0a7b4c2-1111-4222-8333-944455556666",
                "listPicker": {
                    "sections": [
                        {
                            "title": "Pick a branch",
                            "order": 0,
                            "multipleSelection": True,
                            "items": [
                                {"identifier": "b1", "title": "Riverside", "order": 0, "style": "default"},
                                {"identifier": "b3", "title": "Airport", "order": 2, "style": "default"},
                            ],
                        }
                    ]
                },
                "replyMessage": {"title": "Riverside, Airport", "style": "icon"},
            },
        }
        event = one(apple_body("interactive", interactiveData=interactive))
        assert event.kind == "message"
        assert event.message["type"] == "text"
        assert event.message["message"] == "b1, b3"
        assert event.message["extra"]["interactiveData"] == interactive

    def test_a_quick_reply_answer_is_the_picked_identifier(self):
        interactive = {
            "bid": BID,
            "data": {
                "version": "1.0",
                "requestIdentifier": "r",
                "quick-reply": {"selectedIdentifier": "yes", "selectedIndex": 0},
            },
        }
        assert one(apple_body("interactive", interactiveData=interactive)).message["message"] == "yes"

    def test_other_interactive_answers_are_ignored(self):
        interactive = {
            "bid": BID,
            "data": {"version": "1.0", "requestIdentifier": "r", "event": {"timeslots": []}},
        }
        assert events(apple_body("interactive", interactiveData=interactive)) == []

    def test_an_interactive_message_without_data_is_rejected(self):
        with pytest.raises(CallbackRejected):
            PROVIDER.parse(orjson.dumps(apple_body("interactive")))

    def test_close_unsubscribes(self):
        event = one(apple_body("close"))
        assert event.kind == "unsubscribed"
        assert event.message["type"] == "UNSUBSCRIBED"
        assert event.contact.id == USER

    def test_a_rich_link_from_the_user_is_an_inbound_rich_link(self):
        body = apple_body("richLink", richLinkData={"url": "https://news.example/a", "title": "A story"})
        assert one(body).message == {
            "type": "richLink",
            "richLinkUrl": "https://news.example/a",
            "message": "A story",
            "extra": body,
        }

    @pytest.mark.parametrize("kind", ["typing_start", "typing_end", "something_new"])
    def test_typing_and_unknown_types_are_ignored(self, kind: str):
        assert events(apple_body(kind)) == []

    @pytest.mark.parametrize(
        "raw",
        [
            b"not json",
            b"[1, 2]",
            orjson.dumps({"v": 1, "type": "text"}),
            orjson.dumps(apple_body("text", message_id="")),
        ],
    )
    def test_a_body_that_is_not_apples_is_rejected(self, raw: bytes):
        with pytest.raises(CallbackRejected):
            PROVIDER.parse(raw)

    def test_a_repeat_has_the_same_dedupe_key_and_another_message_another(self):
        body = apple_body("text", body="hi")
        assert one(body).dedupe_key == one(body).dedupe_key
        assert one(apple_body("text", "another-id", body="hi")).dedupe_key != one(body).dedupe_key
