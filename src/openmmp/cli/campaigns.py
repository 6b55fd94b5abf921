"""`openmmp campaign progress`: follow a bulk campaign's sending from a terminal, or from a CI log.

A client of a running server's API (Follow bulk campaign progress, `GET /api/v1/bulk-campaign/{id}/events`,
with the company's API key), not of its database: it works from any machine that can reach the API.

It speaks HTTP through the standard library's `http.client`: httpx is only a development dependency
and aiohttp is `kit/http.py`'s alone, and one blocking stream needs neither.
"""

from __future__ import annotations

import codecs
import http.client
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import orjson
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from openmmp.kit.paths import API_PREFIX
from openmmp.models.campaign import CampaignStatus

app = typer.Typer(help="Bulk campaigns, through a running server's API.", no_args_is_help=True)

SILENCE_S = 90.0
"""No byte for this long means the connection is gone: the server writes at least every 15 s (a
`: keep-alive`) or every OPENMMP_CAMPAIGNS__EVENTS_INTERVAL_SECONDS (at most 60), whichever is longer."""
EXIT_DONE, EXIT_CANCELLED, EXIT_HTTP_ERROR, EXIT_DROPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

COUNTS = (
    ("notSend", "not sent"),
    ("inQueue", "in queue"),
    ("sent", "sent"),
    ("delivered", "delivered"),
    ("read", "read"),
    ("fail", "failed"),
    ("blackList", "blacklisted"),
    ("processing", "processing"),
    ("done", "done"),
    ("draft", "draft"),
)
"""The progress counts (wire name, words), in the order a contact goes through them."""
ALWAYS_SHOWN = frozenset({"notSend", "inQueue", "sent", "delivered", "read", "fail"})
"""The counts of the way a contact goes here; the MMP API's other statuses are shown when not zero."""
HANDED_ON = ("sent", "delivered", "read", "fail", "blackList", "done")
"""The contacts the bar counts as done: no longer waiting to be sent (handed to the channel, refused by it
or never to be sent). Not sent, in queue, processing and draft ones are still to go."""

_CLOSED = (CampaignStatus.DONE, CampaignStatus.CANCELLED)
_STATUS_STYLE: dict[int, str] = {
    CampaignStatus.DONE: "green",
    CampaignStatus.CANCELLED: "red",
    CampaignStatus.PAUSED: "yellow",
}
_LINE_END = re.compile(r"\r\n|\r|\n")
_READ_SIZE = 65536
_ERROR_BODY_LIMIT = 65536


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event of a `text/event-stream`: its type ("message" when it names none) and its data."""

    event: str
    data: str


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """The lines of a text split anywhere into chunks; CRLF, LF and CR each end a line.

    A CR that ends a chunk waits for the next one, which may begin with the LF of the same line end; the
    text after the last line end is no line (an event stream's unfinished event is dropped anyway).
    """
    pending = ""
    for chunk in chunks:
        pending += chunk
        start = 0
        while (end := _LINE_END.search(pending, start)) is not None:
            if end.group() == "\r" and end.end() == len(pending):
                break
            yield pending[start : end.start()]
            start = end.end()
        pending = pending[start:]
    if pending.endswith("\r"):
        yield pending[:-1]


def parse_events(chunks: Iterable[str]) -> Iterator[ServerSentEvent]:
    """The events of a `text/event-stream` (the WHATWG HTML "event stream" format), as they complete.

    `chunks` is the decoded text, split anywhere. A blank line ends an event; `data:` lines join with
    "\\n"; lines starting with ":" are comments (keep-alives); an event without data is not one; `id:` and
    `retry:` only matter to a client that reconnects, which this one does not.
    """
    event_type = ""
    data: list[str] = []
    for line in _lines(chunks):
        if not line:
            if data:
                yield ServerSentEvent(event_type or "message", "\n".join(data))
            event_type, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event_type = value
        elif name == "data":
            data.append(value)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class CampaignProgress:
    """What one `progress` event says of the campaign (its data is the campaign as Get bulk campaign
    gives it), as far as this command shows it."""

    public_id: str
    name: str
    status: int
    cause: str
    reason: str | None
    total: int
    counts: dict[str, int]
    rate_per_second: float | None
    eta_seconds: int | None

    @classmethod
    def from_json(cls, data: str) -> CampaignProgress:
        """Read an event's data; ValueError when it is not a campaign. Unknown fields are ignored."""
        campaign = orjson.loads(data)
        if not isinstance(campaign, dict) or not isinstance(campaign.get("status"), int):
            raise ValueError("not a campaign")
        progress = campaign.get("progress")
        if not isinstance(progress, dict):
            progress = {"total": campaign.get("totalContact")}
        rate = progress.get("ratePerSecond")
        eta = progress.get("etaSeconds")
        status = campaign["status"]
        reason = campaign.get("reason")
        return cls(
            public_id=str(campaign.get("publicId") or ""),
            name=str(campaign.get("name") or ""),
            status=status,
            cause=str(campaign.get("cause") or status),
            reason=reason if isinstance(reason, str) else None,
            total=_count(progress.get("total")),
            counts={name: _count(progress.get(name)) for name, _ in COUNTS},
            rate_per_second=float(rate) if isinstance(rate, int | float) else None,
            eta_seconds=_count(eta) if eta is not None else None,
        )

    @property
    def handed_on(self) -> int:
        """The contacts no longer waiting to be sent (HANDED_ON), which the bar shows out of `total`."""
        return sum(self.counts[name] for name in HANDED_ON)

    @property
    def finished(self) -> bool:
        """DONE or CANCELLED with nothing left in queue: the stream's last event."""
        return self.status in _CLOSED and self.counts["inQueue"] == 0

    def shown_counts(self) -> list[tuple[str, str, int]]:
        """(wire name, words, count) of the counts to show: ALWAYS_SHOWN, and the others when not zero."""
        return [
            (name, words, self.counts[name])
            for name, words in COUNTS
            if name in ALWAYS_SHOWN or self.counts[name]
        ]

    def percent(self) -> str:
        """The share handed on, rounded down (100% only once every contact is)."""
        if self.total <= 0:
            return "-"
        return f"{math.floor(1000 * self.handed_on / self.total) / 10:.1f}%"


def duration(seconds: int | None) -> str:
    """`13s`, `3m 20s`, `2h 05m`, `1d 03h`; "-" for none (a campaign that is not running has no ETA)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:g}/s"


def plain_line(progress: CampaignProgress) -> str:
    """One event as one log line: time, campaign, status, handed on/total, counts, rate, ETA, reason."""
    counts = " ".join(f"{name}={count}" for name, _, count in progress.shown_counts())
    line = (
        f"{datetime.now():%H:%M:%S} {progress.public_id} {progress.cause} "
        f"{progress.handed_on}/{progress.total} handed on ({progress.percent()}) {counts} "
        f"rate={_rate(progress.rate_per_second)} eta={duration(progress.eta_seconds)}"
    )
    return f"{line} reason: {progress.reason}" if progress.reason else line


def render(progress: CampaignProgress) -> RenderableType:
    """The terminal's view of one event: name and status, the bar, the counts, rate and ETA, reason."""
    style = _STATUS_STYLE.get(progress.status, "cyan")
    bar = Table.grid(padding=(0, 2))
    bar.add_row(
        ProgressBar(
            total=max(progress.total, 1),
            completed=progress.handed_on,
            width=40,
            complete_style=style,
            finished_style=style,
        ),
        f"{progress.handed_on:,} / {progress.total:,} handed on",
        progress.percent(),
    )
    counts = Text("  ").join(
        Text.assemble((words, "dim"), f" {count:,}") for _, words, count in progress.shown_counts()
    )
    parts: list[RenderableType] = [
        Text.assemble(
            (progress.name, "bold"), "  ", (progress.public_id, "dim"), "  ", (progress.cause, style)
        ),
        bar,
        counts,
        Text.assemble(
            ("rate ", "dim"),
            _rate(progress.rate_per_second),
            ("  ETA ", "dim"),
            duration(progress.eta_seconds),
        ),
    ]
    if progress.reason:
        parts.append(Text.assemble(("reason ", "dim"), (progress.reason, "yellow")))
    return Group(*parts)


class Stopped(Exception):
    """Following the campaign could not go on: `message` for stderr, `code` for the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _why(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return f"nothing received in {SILENCE_S:g} s"
    if isinstance(exc, http.client.IncompleteRead):
        return "the server closed it mid-stream"
    reason = exc.strerror if isinstance(exc, OSError) else None
    return reason or str(exc) or type(exc).__name__


def _problem(status: int, reason: str, body: bytes) -> str:
    """The server's error answer in a line per error: `404 campaignId: No such campaign`."""
    try:
        errors = orjson.loads(body)["errors"]
        lines = [f"{status} {error['name']}: {error['message']}" for error in errors]
    except (ValueError, KeyError, TypeError):
        lines = []
    if lines:
        return "\n".join(lines)
    text = " ".join(body.decode("utf-8", "replace").split())[:200]
    return f"{status} {reason}" + (f": {text}" if text else "")


def open_stream(base_url: str, campaign_id: str, api_key: str) -> http.client.HTTPResponse:
    """The campaign's event stream, answered 200; Stopped when the server cannot be reached (3), or
    answers anything else, its error shown (2). Redirects are not followed: the key goes nowhere else."""
    parts = urlsplit(base_url)
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(parts.hostname or "", parts.port, timeout=SILENCE_S)
    path = f"{parts.path.rstrip('/')}{API_PREFIX}/bulk-campaign/{quote(campaign_id, safe='')}/events"
    headers = {"apiKey": api_key, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        raise Stopped(f"cannot reach {base_url}: {_why(exc)}", EXIT_DROPPED) from None
    if response.status != 200:
        try:
            body = response.read(_ERROR_BODY_LIMIT)
        except (OSError, http.client.HTTPException):
            body = b""
        connection.close()
        raise Stopped(_problem(response.status, response.reason, body), EXIT_HTTP_ERROR)
    content_type = response.getheader("content-type", "")
    if not content_type.startswith("text/event-stream"):
        connection.close()
        raise Stopped(
            f"{base_url} answered {content_type or 'no content type'}, not an event stream: "
            "is --url the OpenMMP server?",
            EXIT_HTTP_ERROR,
        )
    return response


def _text(response: http.client.HTTPResponse) -> Iterator[str]:
    """The body as text as it arrives (UTF-8; a leading byte order mark dropped, as event streams do)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    while chunk := response.read1(_READ_SIZE):
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


def follow(response: http.client.HTTPResponse, base_url: str) -> Iterator[CampaignProgress]:
    """The campaign after each `progress` event, up to and with the one in which it finished; Stopped
    (3) when the stream breaks or ends before it (the campaign deleted, the server stopped)."""
    last: CampaignProgress | None = None
    try:
        for event in parse_events(_text(response)):
            if event.event != "progress":
                continue
            try:
                last = CampaignProgress.from_json(event.data)
            except ValueError:
                raise Stopped(
                    f"{base_url} sent a progress event that is not a campaign", EXIT_DROPPED
                ) from None
            yield last
            if last.finished:
                return
    except (OSError, http.client.HTTPException) as exc:
        raise Stopped(f"the connection to {base_url} dropped: {_why(exc)}", EXIT_DROPPED) from None
    seen = f" (last seen {last.cause})" if last else ""
    raise Stopped(f"the event stream ended before the campaign finished{seen}", EXIT_DROPPED)


def _show(events: Iterator[CampaignProgress], *, terminal: bool) -> CampaignProgress | None:
    """Draw each event (a live view on a terminal, else a line each); the last one, if any."""
    last = None
    if not terminal:
        for last in events:
            typer.echo(plain_line(last))
        return last
    with Live(Text("waiting for the first event…"), console=Console(), auto_refresh=False) as live:
        for last in events:
            live.update(render(last), refresh=True)
    return last


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number, or out of range
        valid = False
    if not valid:
        raise typer.BadParameter("expected http://HOST[:PORT] or https://HOST[:PORT]", param_hint="--url")
    return value


@app.command()
def progress(
    campaign_id: Annotated[str, typer.Argument(help="The campaign's publicId")],
    url: Annotated[
        str, typer.Option(help="The OpenMMP server's address", callback=_base_url)
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str,
        typer.Option(envvar="OPENMMP_API_KEY", show_default=False, help="The campaign's company's API key"),
    ] = "",
) -> None:
    """Follow a bulk campaign's sending live, until it is DONE or CANCELLED.

    On a terminal, a bar of its contacts handed on (sent, delivered, read, failed, blacklisted or done)
    out of all of them, with the counts per status, the rate, the ETA, the status and why it waits; else
    one line per change. Exit status: 0 DONE, 1 CANCELLED, 2 the server answered an error, 3 the server
    could not be reached or the stream broke, 130 interrupted (Ctrl-C).
    """
    if not api_key:
        raise typer.BadParameter("give --api-key or set OPENMMP_API_KEY", param_hint="--api-key")
    response: http.client.HTTPResponse | None = None
    try:
        response = open_stream(url, campaign_id, api_key)
        last = _show(follow(response, url), terminal=sys.stdout.isatty())
    except Stopped as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        if response is not None:
            response.close()
    # `follow` ends only after the event in which the campaign finished, DONE or CANCELLED.
    raise typer.Exit(EXIT_CANCELLED if last and last.status == CampaignStatus.CANCELLED else EXIT_DONE)
