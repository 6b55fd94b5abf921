"""Zalo OA webhook bodies → neutral events: inbound messages, follows, shared details, reports."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from openmmp.providers.base import CallbackRejected, InboundEvent, StatusEvent
from openmmp.providers.zalo.oa import ZaloOaProvider

PROVIDER = ZaloOaProvider()
APP, OA, USER = "360846524940903967", "388613280878808645", "2468458835296197922"


def user_event(name: str, message: dict[str, Any], timestamp: str = "1700000000123") -> dict[str, Any]:
    return {
        "app_id": APP,
        "sender": {"id": USER},
        "user_id_by_app": "552177279717587730",
        "recipient": {"id": OA},
        "event_name": name,
        "message": message,
        "timestamp": timestamp,
    }


def parse(body: dict[str, Any]) -> list[Any]:
    return list(PROVIDER.parse(orjson.dumps(body)))


def inbound(body: dict[str, Any]) -> InboundEvent:
    [event] = parse(body)
    assert isinstance(event, InboundEvent)
    return event


class TestInbound:
    def test_a_text_is_an_inbound_text_from_the_user(self):
        body = user_event("user_send_text", {"text": "Xin chào", "msg_id": "96d3cdf3af150460909"})
        event = inbound(body)
        assert event.kind == "message"
        assert event.contact.id == USER
        assert event.message == {"type": "text", "message": "Xin chào", "extra": body}
        assert event.timestamp_ms == 1700000000123
        assert event.dedupe_key == "user_send_text:96d3cdf3af150460909"
        assert event.raw == body

    def test_an_image_is_a_picture_with_its_caption(self):
        attachment = {
            "type": "image",
            "payload": {"thumbnail": "https://t.zalo/t.jpg", "url": "https://f.zalo/i.jpg"},
        }
        event = inbound(
            user_event("user_send_image", {"text": "look", "msg_id": "m1", "attachments": [attachment]})
        )
        assert {k: v for k, v in event.message.items() if k != "extra"} == {
            "type": "picture",
            "message": "look",
            "fileUrl": "https://f.zalo/i.jpg",
        }

    def test_a_file_has_its_name_and_size(self):
        payload = {"url": "https://f.zalo/d.pdf", "name": "statement.pdf", "size": "20480", "type": "pdf"}
        event = inbound(
            user_event(
                "user_send_file", {"msg_id": "m2", "attachments": [{"type": "file", "payload": payload}]}
            )
        )
        assert {k: v for k, v in event.message.items() if k != "extra"} == {
            "type": "file",
            "message": "",
            "fileUrl": "https://f.zalo/d.pdf",
            "fileName": "statement.pdf",
            "fileSize": 20480,
        }

    @pytest.mark.parametrize(
        ("name", "kind", "mmp"),
        [
            ("user_send_gif", "gif", "picture"),
            ("user_send_sticker", "sticker", "picture"),
            ("user_send_video", "video", "video"),
            ("user_send_audio", "audio", "file"),
        ],
    )
    def test_other_media(self, name: str, kind: str, mmp: str):
        attachment = {"type": kind, "payload": {"url": "https://f.zalo/x", "id": "s1"}}
        event = inbound(user_event(name, {"msg_id": "m3", "attachments": [attachment]}))
        assert event.message["type"] == mmp and event.message["fileUrl"] == "https://f.zalo/x"

    def test_a_location_has_its_coordinates_as_numbers(self):
        attachment = {
            "type": "location",
            "payload": {"coordinates": {"latitude": "10.7769", "longitude": "106.7009"}},
        }
        event = inbound(user_event("user_send_location", {"msg_id": "m4", "attachments": [attachment]}))
        assert event.message["type"] == "location"
        assert event.message["location"] == {"latitude": 10.7769, "longitude": 106.7009}

    def test_a_location_without_coordinates_and_a_link_are_texts(self):
        odd = {"type": "location", "payload": {"coordinates": {"latitude": "north"}}}
        assert (
            inbound(user_event("user_send_location", {"msg_id": "m5", "attachments": [odd]})).message["type"]
            == "text"
        )
        link = {"type": "link", "payload": {"url": "https://news.example/a", "description": "News"}}
        event = inbound(user_event("user_send_link", {"msg_id": "m6", "attachments": [link]}))
        assert (event.message["type"], event.message["message"]) == ("text", "https://news.example/a")

    def test_a_repeat_has_the_same_dedupe_key(self):
        body = user_event("user_send_text", {"text": "a", "msg_id": "same"})
        assert inbound(body).dedupe_key == inbound({**body, "timestamp": "1700000009999"}).dedupe_key

    def test_ids_given_as_numbers_are_read_as_strings(self):
        body = user_event("user_send_text", {"text": "a", "msg_id": 12345})
        body["sender"] = {"id": 2468458835296197}
        event = inbound(body)
        assert (event.contact.id, event.dedupe_key) == ("2468458835296197", "user_send_text:12345")


class TestMembershipAndDetails:
    @pytest.mark.parametrize(
        ("name", "kind", "mmp"),
        [("follow", "subscribed", "SUBSCRIBED"), ("unfollow", "unsubscribed", "UNSUBSCRIBED")],
    )
    def test_follow_and_unfollow(self, name: str, kind: str, mmp: str):
        body = {
            "oa_id": OA,
            "follower": {"id": USER},
            "user_id_by_app": "552177279717587730",
            "event_name": name,
            "source": "oa_profile",
            "app_id": APP,
            "timestamp": "1700000000500",
        }
        event = inbound(body)
        assert (event.kind, event.contact.id, event.message["type"]) == (kind, USER, mmp)
        assert event.dedupe_key == f"{name}:{USER}:1700000000500"

    def test_shared_details_name_the_contact_and_their_phone(self):
        body = {
            "app_id": APP,
            "sender": {"id": USER},
            "recipient": {"id": OA},
            "event_name": "user_submit_info",
            "info": {"name": "Lan", "phone": "84912345678", "address": "1 Lê Lợi", "city": "", "ward": ""},
            "timestamp": "1700000000600",
        }
        event = inbound(body)
        assert (event.contact.name, event.contact.phone) == ("Lan", "84912345678")
        assert event.message["message"] == "Lan, 84912345678, 1 Lê Lợi"
        assert event.dedupe_key == f"user_submit_info:{USER}:1700000000600"


class TestReports:
    def test_received_is_delivered(self):
        body = {
            "app_id": APP,
            "sender": {"id": OA},
            "recipient": {"id": USER},
            "event_name": "user_received_message",
            "message": {"msg_ids": ["a1"]},
            "timestamp": "1700000000700",
        }
        [event] = parse(body)
        assert isinstance(event, StatusEvent)
        assert (event.provider_message_id, event.status, event.timestamp_ms) == (
            "a1",
            "DELIVERED",
            1700000000700,
        )
        assert event.dedupe_key == "delivered:a1" and event.user_id is None and event.up_to_ms is None

    def test_a_received_event_naming_one_msg_id_counts_too(self):
        body = {"event_name": "user_received_message", "message": {"msg_id": "b1"}, "timestamp": "1"}
        [event] = parse(body)
        assert event.provider_message_id == "b1"

    def test_seen_is_read_for_each_id(self):
        body = {
            "app_id": APP,
            "sender": {"id": OA},
            "recipient": {"id": USER},
            "event_name": "user_seen_message",
            "message": {"msg_ids": ["a1", "a2"]},
            "timestamp": "1700000000800",
        }
        events = parse(body)
        assert [(e.provider_message_id, e.status, e.dedupe_key) for e in events] == [
            ("a1", "READ", "read:a1"),
            ("a2", "READ", "read:a2"),
        ]


@pytest.mark.parametrize(
    "name",
    ["oa_send_text", "change_template_status", "change_oa_daily_quota", "user_reacted_message", "anything"],
)
def test_events_openmmp_does_not_handle_are_ignored(name: str):
    assert parse({"event_name": name, "timestamp": "1"}) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"timestamp":"1"}',
        orjson.dumps(
            {
                "event_name": "user_send_text",
                "sender": {"id": USER},
                "message": {"text": "x"},
                "timestamp": "1",
            }
        ),
        orjson.dumps(
            {"event_name": "user_send_text", "message": {"text": "x", "msg_id": "m"}, "timestamp": "1"}
        ),
        orjson.dumps(user_event("user_send_text", {"text": "x", "msg_id": "m"}, timestamp="yesterday")),
        orjson.dumps(user_event("user_send_text", "text")),  # type: ignore[arg-type]
        orjson.dumps({"event_name": "user_seen_message", "message": {"msg_ids": []}, "timestamp": "1"}),
        orjson.dumps({"event_name": "user_seen_message", "message": {"msg_ids": [None]}, "timestamp": "1"}),
        orjson.dumps({"event_name": "follow", "timestamp": "1"}),
        orjson.dumps({"event_name": "user_submit_info", "sender": {"id": USER}, "timestamp": "1"}),
        orjson.dumps(user_event("user_send_text", {"text": "x", "msg_id": "m" * 201})),
    ],
)
def test_bodies_that_are_not_zalo_s_events_are_rejected(raw: bytes):
    with pytest.raises(CallbackRejected):
        PROVIDER.parse(raw)
