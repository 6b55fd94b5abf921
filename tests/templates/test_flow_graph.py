"""The shape of a conversation flow: what a CONVERSATION template may be, and where a reply leads."""

from __future__ import annotations

from typing import Any

import pytest

from openmmp.errors import Invalid
from openmmp.templates import flow_graph


def step(id: str, status: str = "NORMAL", text: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"id": id, "name": id, "status": status, "message": {"type": "text", "message": text}, **fields}


BANK = [
    step("start", "START", "Hello {{name}}, your account number?", answerId="account"),
    step("menu", text="1 balance, 2 card ({{account}})", answerId="choice", nextMessageBaseOn="start"),
    step("balance", "COMPLETE", "{{account}}: 100 USD", nextMessageBaseOn="menu:1"),
    step("card", "COMPLETE", "Card of {{account}} blocked", nextMessageBaseOn="menu: 2 "),
    step("oops", "ERROR", "Sorry, {{name}}"),
]


def fault(messages: list[dict[str, Any]]) -> tuple[str | None, str]:
    with pytest.raises(Invalid) as caught:
        flow_graph.check(messages)
    return caught.value.items[0].name, caught.value.message


class TestWalk:
    def test_a_reply_picks_its_branch_trimmed_and_without_case(self):
        flow = flow_graph.steps(BANK)
        assert flow_graph.after_reply(flow, flow["start"], "anything").id == "menu"
        assert flow_graph.after_reply(flow, flow["menu"], " 2").id == "card"
        assert flow_graph.after_reply(flow, flow["menu"], "1").id == "balance"

    def test_a_reply_that_fits_no_branch_gets_the_error_message_or_nothing(self):
        flow = flow_graph.steps(BANK)
        assert flow_graph.after_reply(flow, flow["menu"], "3").id == "oops"
        without = flow_graph.steps(BANK[:-1])
        assert flow_graph.after_reply(without, without["menu"], "3") is None

    def test_a_step_that_asks_nothing_goes_straight_on(self):
        flow = flow_graph.steps(
            [
                step("hello", "START"),
                step("ask", answerId="x", nextMessageBaseOn="hello"),
                step("done", "COMPLETE", nextMessageBaseOn="ask"),
            ]
        )
        assert flow_graph.straight_on(flow, flow["hello"]).id == "ask"
        assert flow_graph.straight_on(flow, flow["ask"]) is None
        assert flow_graph.straight_on(flow, flow["done"]) is None

    def test_answers_are_not_variables(self):
        assert flow_graph.answer_ids(BANK) == {"account", "choice"}


class TestCheck:
    def test_a_good_flow_passes(self):
        flow_graph.check(BANK)

    @pytest.mark.parametrize(
        ("messages", "name", "why"),
        [
            ([step("a", "NORMAL", answerId="x")], "messages", "exactly one START"),
            ([step("a", "START"), step("b", "START", nextMessageBaseOn="a")], "messages", "exactly one"),
            (
                [step("a", "START", answerId="x", nextMessageBaseOn="a")],
                "messages[0].nextMessageBaseOn",
                "follows no other",
            ),
            (
                [step("a", "START", answerId="x"), step("b", "COMPLETE")],
                "messages[1].nextMessageBaseOn",
                "required",
            ),
            (
                [step("a", "START", answerId="x"), step("b", "COMPLETE", nextMessageBaseOn="zzz")],
                "messages[1].nextMessageBaseOn",
                "no other message",
            ),
            (
                [
                    step("a", "START", answerId="x"),
                    step("b", "COMPLETE", nextMessageBaseOn="a"),
                    step("c", "COMPLETE", nextMessageBaseOn="b"),
                ],
                "messages[2].nextMessageBaseOn",
                "the flow ends there",
            ),
            (
                [step("a", "START"), step("b", "COMPLETE", nextMessageBaseOn="a:yes")],
                "messages[1].nextMessageBaseOn",
                "waits for no reply",
            ),
            (
                [
                    step("a", "START", answerId="x"),
                    step("b", "COMPLETE", answerId="y", nextMessageBaseOn="a"),
                ],
                "messages[1].answerId",
                "waits for no reply",
            ),
            (
                [
                    step("a", "START", answerId="x"),
                    step("b", answerId="x", nextMessageBaseOn="a"),
                    step("c", "COMPLETE", nextMessageBaseOn="b"),
                ],
                "messages[1].answerId",
                "under this name",
            ),
            ([step("a", "START", answerId="x")], "messages[0].status", "nothing follows"),
            (
                [
                    step("a", "START", answerId="x"),
                    step("b", "COMPLETE", nextMessageBaseOn="a"),
                    step("c", "COMPLETE", nextMessageBaseOn="a"),
                ],
                "messages[2].nextMessageBaseOn",
                "already follows",
            ),
            (
                [
                    step("a", "START"),
                    step("b", "COMPLETE", nextMessageBaseOn="a"),
                    step("c", "COMPLETE", nextMessageBaseOn="a"),
                ],
                "messages[2].nextMessageBaseOn",
                "already follows",
            ),
            (
                [
                    step("a", "START", answerId="x"),
                    step("b", "COMPLETE", nextMessageBaseOn="a:Yes"),
                    step("c", "COMPLETE", nextMessageBaseOn="a:yes"),
                ],
                "messages[2].nextMessageBaseOn",
                "same answer",
            ),
            (
                [step("a", "START", answerId="x"), step("e1", "ERROR"), step("e2", "ERROR")],
                "messages[2].nextMessageBaseOn",
                "only one ERROR",
            ),
            (
                [
                    step("a", "START", answerId="x"),
                    step("done", "COMPLETE", nextMessageBaseOn="a"),
                    step("b", answerId="y", nextMessageBaseOn="c"),
                    step("c", answerId="z", nextMessageBaseOn="b"),
                ],
                "messages[2].nextMessageBaseOn",
                "never reaches",
            ),
            (
                [
                    step("a", "START", "{{x}} first", answerId="x"),
                    step("b", "COMPLETE", nextMessageBaseOn="a"),
                ],
                "messages[0].message",
                "answered only after",
            ),
            (
                [
                    step("a", "START", answerId="x"),
                    step("b", "COMPLETE", nextMessageBaseOn="a"),
                    step("e", "ERROR", "you said {{x}}"),
                ],
                "messages[2].message",
                "answered only after",
            ),
        ],
    )
    def test_a_flow_that_cannot_run_is_400_naming_the_message(
        self, messages: list[dict[str, Any]], name: str, why: str
    ):
        found, message = fault(messages)
        assert found == name
        assert why in message
