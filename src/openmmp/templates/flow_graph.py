"""The shape of a CONVERSATION template's flow (pure: no I/O), as checked at creation and walked at run time.

The messages (TemplateMessage, wire names) are the flow's steps:

- exactly one has status START: it is sent first;
- every other names the step it follows in `nextMessageBaseOn`: `"<id>"` (whatever the reply) or
  `"<id>:<answer>"` (when the reply is `<answer>`, compared trimmed and without case); one ERROR step may
  name none: it is sent when a reply fits no step (the flow's fallback);
- a START or NORMAL step with an `answerId` waits for the reply, keeps it under that name and goes on to
  the step the reply picks; one without goes on at once to its one successor;
- a COMPLETE step ends the flow; an ERROR step ends it as failed.

Each step follows one other, so the steps form a tree from START: every flow ends. A step may use
`{{answerId}}` only for answers given before it (its ancestors'); other placeholders are the send's
`params`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openmmp.errors import Invalid
from openmmp.messages.rendering import placeholders

ENDS = ("COMPLETE", "ERROR")
"""A step of these statuses ends the flow once it is sent."""


@dataclass(frozen=True)
class Step:
    id: str
    status: str
    answer_id: str | None
    after: str | None
    """The id of the step this one follows (None: START, or the fallback ERROR step)."""
    when: str | None
    """The reply to `after` that leads here, folded (`normal`); None: any reply."""
    message: Mapping[str, Any]


def normal(reply: str) -> str:
    """A reply as branches compare it: trimmed, without case."""
    return reply.strip().casefold()


def steps(messages: Sequence[Mapping[str, Any]]) -> dict[str, Step]:
    """The steps by id, in the template's order."""
    found = {}
    for item in messages:
        base = item.get("nextMessageBaseOn")
        after, when = None, None
        if base is not None:
            after, colon, answer = str(base).partition(":")
            when = normal(answer) if colon else None
        found[item["id"]] = Step(
            id=item["id"],
            status=item["status"],
            answer_id=item.get("answerId"),
            after=after,
            when=when,
            message=item["message"],
        )
    return found


def start_of(flow: Mapping[str, Step]) -> Step:
    return next(step for step in flow.values() if step.status == "START")


def fallback_of(flow: Mapping[str, Step]) -> Step | None:
    """The ERROR step sent when a reply fits no step, if the template has one."""
    return next((s for s in flow.values() if s.status == "ERROR" and s.after is None), None)


def after_reply(flow: Mapping[str, Step], current: Step, reply: str) -> Step | None:
    """The step the reply to `current` leads to: its branch for that reply, else its branch for any
    reply, else the fallback ERROR step (None: there is none)."""
    children = [s for s in flow.values() if s.after == current.id]
    folded = normal(reply)
    chosen = next((s for s in children if s.when == folded), None)
    chosen = chosen or next((s for s in children if s.when is None), None)
    return chosen or fallback_of(flow)


def straight_on(flow: Mapping[str, Step], current: Step) -> Step | None:
    """The step sent right after `current` when it waits for no reply (None: it ends the flow)."""
    if current.status in ENDS or current.answer_id is not None:
        return None
    return next(s for s in flow.values() if s.after == current.id)


def check(messages: Sequence[Mapping[str, Any]]) -> None:
    """A 400 naming the first message whose place in the flow is wrong (`messages[i].<field>`)."""
    flow = steps(messages)
    index = {item["id"]: n for n, item in enumerate(messages)}

    def fault(step: Step, field: str, message: str) -> Invalid:
        return Invalid(message, name=f"messages[{index[step.id]}].{field}")

    starts = [s for s in flow.values() if s.status == "START"]
    if len(starts) != 1:
        raise Invalid("a CONVERSATION template has exactly one START message", name="messages")
    fallbacks = 0
    answers: dict[str, Step] = {}
    for step in flow.values():
        if step.answer_id is not None:
            if step.status in ENDS:
                raise fault(step, "answerId", f"a {step.status} message ends the flow: it waits for no reply")
            if step.answer_id in answers:
                raise fault(step, "answerId", "another message keeps its reply under this name")
            answers[step.answer_id] = step
        if step.status == "START":
            if step.after is not None:
                raise fault(step, "nextMessageBaseOn", "the START message follows no other")
            continue
        if step.after is None:
            if step.status != "ERROR":
                raise fault(step, "nextMessageBaseOn", "required: the id of the message this one follows")
            fallbacks += 1
            if fallbacks > 1:
                raise fault(step, "nextMessageBaseOn", "only one ERROR message may follow no other")
            continue
        parent = flow.get(step.after)
        if parent is None or parent.id == step.id:
            raise fault(
                step, "nextMessageBaseOn", f"no other message of the template has the id {step.after!r}"
            )
        if parent.status in ENDS:
            raise fault(step, "nextMessageBaseOn", f"{parent.id!r} is {parent.status}: the flow ends there")
        if step.when is not None and parent.answer_id is None:
            raise fault(step, "nextMessageBaseOn", f"{parent.id!r} waits for no reply (it has no answerId)")
    _check_branches(flow, fault)
    _check_reachable(flow, start_of(flow), fault)
    _check_answers_used(flow, answers, fault)


def _check_branches(flow: Mapping[str, Step], fault: Any) -> None:
    for step in flow.values():
        if step.status in ENDS:
            continue
        children = [s for s in flow.values() if s.after == step.id]
        anyway = [s for s in children if s.when is None]
        if not children:
            raise fault(step, "status", "nothing follows this message: make it COMPLETE, or add the next one")
        if len(anyway) > 1:
            raise fault(anyway[1], "nextMessageBaseOn", f"another message already follows {step.id!r} anyway")
        if step.answer_id is None and len(children) != 1:
            raise fault(
                children[1], "nextMessageBaseOn", f"{step.id!r} waits for no reply: one message follows it"
            )
        seen: set[str] = set()
        for child in children:
            if child.when is not None and child.when in seen:
                raise fault(child, "nextMessageBaseOn", "another message follows the same answer")
            if child.when is not None:
                seen.add(child.when)


def _ancestors(flow: Mapping[str, Step], step: Step) -> list[Step]:
    found: list[Step] = []
    current = step
    while current.after is not None and len(found) <= len(flow):
        current = flow[current.after]
        found.append(current)
    return found


def _check_reachable(flow: Mapping[str, Step], start: Step, fault: Any) -> None:
    """Every step but the fallback descends from START (a loop of `nextMessageBaseOn` never does)."""
    for step in flow.values():
        if step.status == "START" or step.after is None:
            continue
        if start not in _ancestors(flow, step):
            raise fault(step, "nextMessageBaseOn", "the flow never reaches this message from its START")


def _check_answers_used(flow: Mapping[str, Step], answers: Mapping[str, Step], fault: Any) -> None:
    """`{{answerId}}` only in a step after the one that asks for it."""
    for step in flow.values():
        given = {s.answer_id for s in _ancestors(flow, step) if s.answer_id is not None}
        for name in sorted(placeholders(step.message)):
            if name in answers and name not in given:
                raise fault(step, "message", f"{{{{{name}}}}} is answered only after this message is sent")


def answer_ids(messages: Sequence[Mapping[str, Any]]) -> set[str]:
    """The names the flow keeps replies under (not the send's `params`)."""
    return {str(m["answerId"]) for m in messages if m.get("answerId")}
