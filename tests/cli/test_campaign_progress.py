"""`openmmp campaign progress`: the event-stream parser, and the command against a real HTTP server.

The server is a small Starlette app on 127.0.0.1 that streams canned campaigns in the exact format of
Follow bulk campaign progress (`event: progress` + the campaign as the BulkCampaign schema dumps it, and
`: keep-alive` comments), and answers errors with the API's error body.
"""

from __future__ import annotations

import asyncio
import io
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route
from typer.testing import CliRunner

from openmmp.campaigns.schemas import BulkCampaign, BulkCampaignChannelResponse, BulkCampaignProgress
from openmmp.cli.campaigns import CampaignProgress, ServerSentEvent, duration, parse_events, render
from openmmp.cli.main import app
from openmmp.errors import ErrorCode, single_error
from openmmp.models.campaign import CampaignStatus, CampaignType

KEY = "mmp_" + "Zq7" * 9
"""Shaped like an API key: the suite's secret scan flags it wherever the tests' output shows it."""
TOTAL = 100
PAUSE_REASON = "Paused: 12% of the last 200 sends failed"
OPENMMP = [sys.executable, "-m", "openmmp.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def campaign(status: CampaignStatus, reason: str | None = None, eta: int | None = None, **counts: int) -> str:
    """A campaign as the events' `data` gives it: the BulkCampaign schema, dumped with its wire names."""
    return BulkCampaign(
        public_id="cmp_canned",
        name="Spring sale",
        type=CampaignType.BROADCAST_ONLY,
        category=None,
        status=status,
        cause=status.name,
        channels=[BulkCampaignChannelResponse(account_id="acc_1", template_id="tpl_1")],
        total_contact=TOTAL,
        reason=reason,
        progress=BulkCampaignProgress(total=TOTAL, rate_per_second=40.0, eta_seconds=eta, **counts),
        created_date=1,
        updated_date=2,
    ).model_dump_json(by_alias=True)


RUN = [
    campaign(CampaignStatus.STARTED, eta=3, not_send=TOTAL),
    campaign(CampaignStatus.PROCESSING, eta=2, not_send=40, in_queue=20, sent=30, delivered=8, fail=2),
    # DONE with contacts still in queue: the stream goes on until they are settled.
    campaign(CampaignStatus.DONE, in_queue=5, sent=55, delivered=30, read=6, fail=4),
    campaign(CampaignStatus.DONE, sent=60, delivered=30, read=6, fail=4),
]
CANCELLED_RUN = [
    campaign(CampaignStatus.PROCESSING, eta=2, not_send=60, in_queue=20, sent=20),
    campaign(CampaignStatus.PAUSED, reason=PAUSE_REASON, not_send=60, in_queue=2, sent=30, fail=8),
    campaign(CampaignStatus.CANCELLED, not_send=60, in_queue=2, sent=30, fail=8),
    campaign(CampaignStatus.CANCELLED, not_send=60, sent=31, fail=8, black_list=1),
]
SCRIPTS = {
    "cmp_done": RUN,
    "cmp_cancelled": CANCELLED_RUN,
    "cmp_dropped": RUN[:2],
    "cmp_ended": RUN[:2],
    "cmp_forever": RUN[:1],
}


@dataclass
class CannedServer:
    """Streams SCRIPTS by campaign id; remembers the headers of each request."""

    base_url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)

    async def events(self, request: Request) -> Response:
        self.requests.append({name.lower(): value for name, value in request.headers.items()})
        if request.headers.get("apikey") != KEY:
            return single_error(401, ErrorCode.NOT_AUTHENTICATE, "apiKey", "API key is not valid")
        campaign_id = request.path_params["campaignId"]
        if campaign_id not in SCRIPTS:
            return single_error(404, ErrorCode.RESOURCE_NOT_FOUND, "campaignId", "No such campaign")
        return StreamingResponse(
            self._stream(campaign_id), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def _stream(self, campaign_id: str) -> AsyncIterator[bytes]:
        for data in SCRIPTS[campaign_id]:
            yield b"event: progress\ndata: " + data.encode() + b"\n\n"
            yield b": keep-alive\n\n"
        if campaign_id == "cmp_dropped":
            raise RuntimeError("the server goes away mid-stream (uvicorn drops the connection)")
        while campaign_id == "cmp_forever":
            await asyncio.sleep(0.05)
            yield b": keep-alive\n\n"

    async def elsewhere(self, request: Request) -> Response:
        return HTMLResponse("<html><body>Some other site</body></html>")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/bulk-campaign/{campaignId}/events", self.events),
                Route("/{path:path}", self.elsewhere),
            ]
        )


@pytest.fixture(scope="module")
def server() -> Iterator[CannedServer]:
    """The canned server on a free 127.0.0.1 port, in a thread of its own (the command blocks)."""
    canned = CannedServer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    canned.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(
            canned.app(), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the canned server did not start"
        time.sleep(0.01)
    yield canned
    uvicorn_server.should_exit = True
    thread.join(timeout=20)
    sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str


def follow(campaign_id: str, base_url: str, *options: str, env: dict[str, str] | None = None) -> Outcome:
    """Run `openmmp campaign progress` in this process (its stdout is not a terminal: a line per event)."""
    environment = {"OPENMMP_API_KEY": None, **(env or {})}
    result = CliRunner().invoke(
        app, ["campaign", "progress", campaign_id, "--url", base_url, *options], env=environment
    )
    if not isinstance(result.exception, SystemExit | None):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


def subprocess_env(**extra: str) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name != "OPENMMP_API_KEY"}
    return {**environment, "COLUMNS": "100", **extra}


class TestParsingAnEventStream:
    def test_a_blank_line_ends_each_event_and_comments_are_skipped(self):
        raw = (
            ": keep-alive\n\n"
            'event: progress\ndata: {"n": 1}\n\n'
            ": keep-alive\n\n"
            ": another comment\n"
            'event: progress\ndata: {"n": 2}\n\n'
            'data: {"n": 3}\n\n'
        )
        assert list(parse_events([raw])) == [
            ServerSentEvent("progress", '{"n": 1}'),
            ServerSentEvent("progress", '{"n": 2}'),
            ServerSentEvent("message", '{"n": 3}'),
        ]

    def test_data_lines_of_one_event_join_with_newlines(self):
        raw = "event: progress\ndata: first\ndata:second\ndata:  third\n: a comment within\ndata\n\n"
        assert list(parse_events([raw])) == [ServerSentEvent("progress", "first\nsecond\n third\n")]

    @pytest.mark.parametrize("line_end", ["\r\n", "\r", "\n"])
    def test_crlf_and_cr_end_lines_as_lf_does(self, line_end: str):
        raw = f": keep-alive{line_end}{line_end}event: progress{line_end}data: a{line_end}data: b{line_end}{line_end}"
        expected = [ServerSentEvent("progress", "a\nb")]
        assert list(parse_events([raw])) == expected
        assert list(parse_events(list(raw))) == expected, "split into one-character chunks"

    def test_a_crlf_split_between_chunks_is_one_line_end(self):
        chunks = ["event: progress\r", "\ndata: a\r", "\ndata: b\r", "\n\r", "\n"]
        assert list(parse_events(chunks)) == [ServerSentEvent("progress", "a\nb")]

    def test_events_without_data_and_the_unfinished_last_one_are_not_events(self):
        raw = "event: progress\n\nid: 7\nretry: 10\n\nevent: progress\ndata: cut short"
        assert list(parse_events([raw])) == []

    def test_an_event_type_applies_to_its_own_event_only(self):
        raw = "event: progress\ndata: 1\n\ndata: 2\n\nevent\ndata: 3\n\n"
        assert [event.event for event in parse_events([raw])] == ["progress", "message", "message"]


class TestReadingAProgressEvent:
    def test_the_bar_counts_the_contacts_no_longer_waiting(self):
        shown = CampaignProgress.from_json(
            campaign(CampaignStatus.PROCESSING, not_send=40, in_queue=20, sent=30, delivered=8, fail=2)
        )
        assert (shown.handed_on, shown.total, shown.percent()) == (40, 100, "40.0%")
        assert not shown.finished

    def test_a_campaign_is_finished_once_closed_with_nothing_in_queue(self):
        assert not CampaignProgress.from_json(CANCELLED_RUN[2]).finished
        final = CampaignProgress.from_json(CANCELLED_RUN[3])
        assert final.finished
        assert final.handed_on == 40
        assert ("blackList", "blacklisted", 1) in final.shown_counts()

    def test_statuses_this_server_does_not_use_are_shown_only_when_counted(self):
        names = [name for name, _, _ in CampaignProgress.from_json(RUN[1]).shown_counts()]
        assert names == ["notSend", "inQueue", "sent", "delivered", "read", "fail"]

    def test_the_percentage_reaches_100_only_when_every_contact_is_handed_on(self):
        almost = CampaignProgress.from_json(
            '{"status": 3, "progress": {"total": 2000, "sent": 1999, "inQueue": 1}}'
        )
        assert almost.percent() == "99.9%"
        assert CampaignProgress.from_json(RUN[3]).percent() == "100.0%"

    def test_data_that_is_not_a_campaign_is_refused(self):
        for data in ("not json", "[1, 2]", '{"name": "no status"}'):
            with pytest.raises(ValueError, match=r"."):
                CampaignProgress.from_json(data)

    @pytest.mark.parametrize(
        ("seconds", "shown"), [(None, "-"), (13, "13s"), (200, "3m 20s"), (7500, "2h 05m"), (97200, "1d 03h")]
    )
    def test_durations_read_at_a_glance(self, seconds: int | None, shown: str):
        assert duration(seconds) == shown

    def test_the_terminal_view_shows_status_bar_counts_rate_eta_and_reason(self):
        console = Console(file=io.StringIO(), width=100, record=True)
        console.print(render(CampaignProgress.from_json(CANCELLED_RUN[1])))
        text = console.export_text()
        assert "Spring sale" in text
        assert "PAUSED" in text
        assert "38 / 100 handed on" in text
        assert "38.0%" in text
        assert "not sent 60" in text
        assert "in queue 2" in text
        assert "failed 8" in text
        assert "rate 40/s" in text
        assert "ETA -" in text
        assert PAUSE_REASON in text
        assert "━" in text


class TestFollowingACampaignToItsEnd:
    def test_a_campaign_done_exits_0_with_a_line_per_event_and_the_final_counts(self, server: CannedServer):
        outcome = follow("cmp_done", server.base_url, "--api-key", KEY)
        assert outcome.exit_code == 0, outcome.stderr
        lines = outcome.stdout.splitlines()
        assert len(lines) == len(RUN)
        assert "STARTED 0/100 handed on (0.0%) notSend=100 inQueue=0" in lines[0]
        assert "rate=40/s eta=3s" in lines[0]
        assert "PROCESSING 40/100 handed on (40.0%)" in lines[1]
        assert "DONE 95/100 handed on (95.0%)" in lines[2]
        assert lines[-1].endswith(
            "cmp_canned DONE 100/100 handed on (100.0%) "
            "notSend=0 inQueue=0 sent=60 delivered=30 read=6 fail=4 rate=40/s eta=-"
        )
        assert outcome.stderr == ""
        assert server.requests[-1]["apikey"] == KEY
        assert server.requests[-1]["accept"] == "text/event-stream"
        assert KEY not in outcome.stdout + outcome.stderr

    def test_a_campaign_cancelled_exits_1_showing_why_it_paused(self, server: CannedServer):
        outcome = follow("cmp_cancelled", server.base_url, env={"OPENMMP_API_KEY": KEY})
        assert outcome.exit_code == 1, outcome.stderr
        lines = outcome.stdout.splitlines()
        assert len(lines) == len(CANCELLED_RUN)
        assert lines[1].endswith(f"reason: {PAUSE_REASON}")
        assert (
            "CANCELLED 40/100 handed on (40.0%) notSend=60 inQueue=0 sent=31 delivered=0 read=0 fail=8 "
            "blackList=1 rate=40/s eta=-"
        ) in lines[-1]
        assert server.requests[-1]["apikey"] == KEY
        assert KEY not in outcome.stdout + outcome.stderr


class TestWhenTheCampaignCannotBeFollowed:
    def test_an_unknown_campaign_exits_2_with_the_servers_message(self, server: CannedServer):
        outcome = follow("cmp_nope", server.base_url, "--api-key", KEY)
        assert outcome.exit_code == 2
        assert outcome.stderr.strip() == "404 campaignId: No such campaign"
        assert outcome.stdout == ""

    def test_a_refused_key_exits_2_without_showing_it(self, server: CannedServer):
        wrong = "mmp_" + "Wr0ng" * 5
        outcome = follow("cmp_done", server.base_url, "--api-key", wrong)
        assert outcome.exit_code == 2
        assert outcome.stderr.strip() == "401 apiKey: API key is not valid"
        assert wrong not in outcome.stdout + outcome.stderr

    def test_an_address_that_is_not_the_api_exits_2(self, server: CannedServer):
        outcome = follow("cmp_done", f"{server.base_url}/elsewhere", "--api-key", KEY)
        assert outcome.exit_code == 2
        assert "text/html" in outcome.stderr
        assert "not an event stream" in outcome.stderr

    def test_a_dropped_connection_exits_3_after_the_events_it_got(self, server: CannedServer):
        outcome = follow("cmp_dropped", server.base_url, "--api-key", KEY)
        assert outcome.exit_code == 3
        assert len(outcome.stdout.splitlines()) == 2
        assert outcome.stderr.strip() == (
            f"the connection to {server.base_url} dropped: the server closed it mid-stream"
        )
        assert "Traceback" not in outcome.stderr

    def test_a_stream_that_ends_before_the_campaign_does_exits_3(self, server: CannedServer):
        outcome = follow("cmp_ended", server.base_url, "--api-key", KEY)
        assert outcome.exit_code == 3
        assert "ended before the campaign finished (last seen PROCESSING)" in outcome.stderr

    def test_a_server_that_is_not_there_exits_3(self):
        base_url = f"http://127.0.0.1:{free_port()}"
        outcome = follow("cmp_done", base_url, "--api-key", KEY)
        assert outcome.exit_code == 3
        assert outcome.stderr.startswith(f"cannot reach {base_url}: ")
        assert "Traceback" not in outcome.stderr

    def test_without_a_key_nothing_is_asked(self, server: CannedServer):
        requests = len(server.requests)
        outcome = follow("cmp_done", server.base_url)
        assert outcome.exit_code == 2
        assert "OPENMMP_API_KEY" in outcome.stderr
        assert len(server.requests) == requests

    @pytest.mark.parametrize("url", ["ftp://127.0.0.1:8000", "127.0.0.1:8000", "http://127.0.0.1:port"])
    def test_an_address_that_is_not_http_is_refused(self, url: str):
        outcome = follow("cmp_done", url, "--api-key", KEY)
        assert outcome.exit_code == 2
        assert "--url" in outcome.stderr


class TestAsARealProcess:
    def test_on_a_terminal_it_draws_a_live_bar(self, server: CannedServer):
        """Under a pseudo-terminal, as a person runs it: the live view's last frame stays on screen."""
        reader, writer = pty.openpty()
        process = subprocess.Popen(
            [*OPENMMP, "campaign", "progress", "cmp_done", "--url", server.base_url],
            stdout=writer,
            stderr=subprocess.PIPE,
            env=subprocess_env(OPENMMP_API_KEY=KEY),
        )
        os.close(writer)
        screen = b""
        try:
            while True:
                ready, _, _ = select.select([reader], [], [], 60)
                assert ready, "no output from the command in 60 s"
                try:
                    chunk = os.read(reader, 65536)
                except OSError:  # EIO: the command ended and closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            assert process.wait(timeout=60) == 0
        finally:
            process.kill()
            os.close(reader)
            assert process.stderr is not None
            stderr = process.stderr.read().decode()
            process.stderr.close()
        text = ANSI.sub("", screen.decode())
        assert "100 / 100 handed on" in text
        assert "100.0%" in text
        assert "DONE" in text
        assert "sent 60" in text
        assert "delivered 30" in text
        assert "read 6" in text
        assert "failed 4" in text
        assert "━" in text
        assert "\x1b[" in screen.decode(), "a terminal gets a styled, redrawn view"
        assert stderr == ""
        assert KEY not in screen.decode() + stderr

    def test_ctrl_c_exits_130_quietly(self, server: CannedServer):
        process = subprocess.Popen(
            [*OPENMMP, "campaign", "progress", "cmp_forever", "--url", server.base_url, "--api-key", KEY],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert "cmp_canned STARTED" in first
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == 130
        assert "Traceback" not in stderr
        assert "Aborted" not in stderr
        assert KEY not in first + stdout + stderr
