"""The portal's campaign pages: create, upload contacts and follow the import, broadcast, pause / resume /
cancel, and the live progress, all through the services the Bulk Campaign API calls (its answers are the
checks here). No worker runs in the `app` fixture: the import task and the campaign's runner are stepped
by hand as the campaign tests do."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from openmmp.models.campaign import CampaignStatus
from tests.campaigns.conftest import API
from tests.campaigns.test_campaign_runs import dispatched, internal_id, runner, sms_campaign
from tests.campaigns.test_contact_import import CSV, run_all
from tests.conftest import Tenant
from tests.portal.conftest import PortalClient

PAGES = "/portal/campaigns"
_HX_GET = re.compile(r'hx-get="([^"]+)"')


def many(count: int) -> bytes:
    """A CSV of `count` good contacts of the test template (parameters `name` and `code`)."""
    rows = [f"85512{n:06d},N{n},{n}" for n in range(count)]
    return ("phone,name,code\n" + "\n".join(rows) + "\n").encode()


def public_id_of(response: httpx.Response) -> str:
    """The campaign a redirect (303, or htmx's HX-Redirect) goes to."""
    target = response.headers.get("location") or response.headers["hx-redirect"]
    return urlsplit(target).path.rsplit("/", 1)[1]


async def api_campaign(client: httpx.AsyncClient, tenant: Tenant, public_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/{public_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


async def upload(
    admin: PortalClient,
    public_id: str,
    body: bytes,
    *,
    filename: str = "contacts.csv",
    content_type: str = "text/csv",
    script: bool = True,
    **fields: str,
) -> httpx.Response:
    """The upload form as the portal's script sends it (`script`: HX-Request and X-CSRF-Token headers), or
    as a browser without JavaScript posts it (the CSRF field only)."""
    headers = {"HX-Request": "true", "X-CSRF-Token": admin.csrf} if script else {}
    return await admin.http.post(
        f"{PAGES}/{public_id}/contacts",
        data={"csrf": admin.csrf, "phoneColumn": "phone", **fields},
        files={"file": (filename, body, content_type)},
        headers=headers,
    )


async def imported(app: Any, admin: PortalClient, answer: httpx.Response, tmp_path: Path) -> str:
    """Run the import the upload answered with to its end; its progress fragment then."""
    assert answer.status_code == 202, answer.text
    [follow] = _HX_GET.findall(answer.text)
    await run_all(app, tmp_path)
    done = await admin.htmx("GET", follow)
    assert done.status_code == 200, done.text
    return done.text


async def campaign_with_contacts(
    app: Any,
    client: httpx.AsyncClient,
    partner: Tenant,
    tenant: Tenant,
    admin: PortalClient,
    tmp_path: Path,
    count: int,
) -> str:
    """A PENDING campaign (SMS at 10/s, default country KH) with `count` contacts uploaded in the portal."""
    campaign = await sms_campaign(client, partner, tenant)
    public_id: str = campaign["publicId"]
    await imported(app, admin, await upload(admin, public_id, many(count)), tmp_path)
    return public_id


def counts_of(fragment: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(r'id="count-(\w+)"[^>]*>(\d+)<', fragment)}


class TestCreating:
    async def test_a_campaign_made_in_the_portal_is_the_apis_and_listed(
        self, client: httpx.AsyncClient, partner: Tenant, tenant: Tenant, admin: PortalClient
    ):
        [sending] = (await sms_campaign(client, partner, tenant))["channels"]
        account, template = sending["accountId"], sending["templateId"]

        form = await admin.get(f"{PAGES}/new")
        assert form.status_code == 200
        assert f'value="{account}"' in form.text and f'value="{template}"' in form.text
        choices = await admin.htmx("GET", f"{PAGES}/new/templates?accountId={account}")
        assert "<html" not in choices.text and f'value="{template}"' in choices.text

        created = await admin.post(
            PAGES, {"name": "Portal promo", "type": "1", "accountId": account, "templateId": template}
        )

        assert created.status_code == 303, created.text
        shown = await api_campaign(client, tenant, public_id_of(created))
        assert (shown["name"], shown["status"], shown["type"]) == ("Portal promo", CampaignStatus.PENDING, 1)
        assert shown["channels"] == [{"accountId": account, "templateId": template}]
        listed = await admin.get(PAGES)
        row = listed.text[listed.text.index(f'id="campaign-{shown["publicId"]}"') :]
        row = row[: row.index("</tr>")]
        assert "Portal promo" in row and "Welcome" in row and "Campaign channel" in row
        assert "PENDING" in row and "0 / 0" in row

    async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_made(
        self, client: httpx.AsyncClient, partner: Tenant, tenant: Tenant, admin: PortalClient
    ):
        [sending] = (await sms_campaign(client, partner, tenant))["channels"]
        good = {
            "name": "Bad",
            "type": "1",
            "accountId": sending["accountId"],
            "templateId": sending["templateId"],
        }

        nameless = await admin.post(PAGES, good | {"name": ""})
        assert nameless.status_code == 400 and "<strong>name</strong>" in nameless.text
        no_template = await admin.htmx("POST", PAGES, good | {"templateId": ""})
        assert no_template.status_code == 400 and "<html" not in no_template.text
        assert "channels[0].templateId" in no_template.text
        not_ours = await admin.post(PAGES, good | {"accountId": "no-such-channel"})
        assert not_ours.status_code == 404 and "channels[0].accountId" in not_ours.text
        wrong_type = await admin.post(PAGES, good | {"type": "2"})
        assert wrong_type.status_code == 400 and "channels[0].templateId" in wrong_type.text
        listed = await client.get(API, params={"name": "Bad"}, headers=tenant.headers)
        assert listed.json()["total"] == 0

    async def test_creating_needs_the_csrf_token(
        self, client: httpx.AsyncClient, partner: Tenant, tenant: Tenant, admin: PortalClient
    ):
        [sending] = (await sms_campaign(client, partner, tenant))["channels"]
        form = {"name": "Forged", "type": "1", **sending}
        refused = await admin.http.post(PAGES, data=form)
        assert refused.status_code == 403 and "csrf" in refused.text
        listed = await client.get(API, params={"name": "Forged"}, headers=tenant.headers)
        assert listed.json()["total"] == 0


class TestContacts:
    async def test_an_upload_is_imported_and_its_progress_followed_to_the_end(
        self,
        app: Any,
        client: httpx.AsyncClient,
        partner: Tenant,
        tenant: Tenant,
        admin: PortalClient,
        tmp_path: Path,
    ):
        public_id = (await sms_campaign(client, partner, tenant))["publicId"]
        page = await admin.get(f"{PAGES}/{public_id}")
        assert 'data-upload data-progress="upload-bar" data-target="import-result"' in page.text
        assert 'enctype="multipart/form-data"' in page.text and 'id="upload-bar"' in page.text

        answer = await upload(admin, public_id, CSV.encode())

        assert answer.status_code == 202, answer.text
        assert 'id="import-progress"' in answer.text and 'hx-trigger="every 1s"' in answer.text
        assert "<html" not in answer.text
        done = await imported(app, admin, answer, tmp_path)
        assert "hx-trigger" not in done and 'data-status="DONE"' in done
        assert 'id="import-progress" max="100" value="100"' in done
        assert 'id="import-imported">3<' in done and 'id="import-invalid">2<' in done
        assert 'id="import-duplicates">1<' in done
        [report_url] = re.findall(r'id="import-report" href="([^"]+)"', done)
        report = await admin.get(report_url)
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(report.text)))
        assert [row[:2] for row in rows] == [["line", "phone"], ["5", "not a phone"], ["7", "85512345673"]]
        assert (await api_campaign(client, tenant, public_id))["totalContact"] == 3
        # The page shows the campaign's latest import when it is opened again.
        again = await admin.get(f"{PAGES}/{public_id}")
        assert (
            'id="import-imported">3<' in again.text
            and re.search(r'id="count-notSend"[^>]*>3<', again.text) is not None
        )

    async def test_without_javascript_the_form_posts_and_the_page_shows_the_import(
        self,
        app: Any,
        client: httpx.AsyncClient,
        partner: Tenant,
        tenant: Tenant,
        admin: PortalClient,
        tmp_path: Path,
    ):
        public_id = (await sms_campaign(client, partner, tenant))["publicId"]

        posted = await upload(admin, public_id, many(4), script=False)

        assert posted.status_code == 303, posted.text
        await run_all(app, tmp_path)
        page = await admin.get(posted.headers["location"])
        assert page.status_code == 200 and "The import has started" in page.text
        assert 'id="import-imported">4<' in page.text
        assert (await api_campaign(client, tenant, public_id))["totalContact"] == 4

    async def test_a_file_over_the_limit_is_a_413_and_a_bad_one_a_400(
        self,
        app: Any,
        client: httpx.AsyncClient,
        partner: Tenant,
        tenant: Tenant,
        admin: PortalClient,
    ):
        public_id = (await sms_campaign(client, partner, tenant))["publicId"]
        settings = app.state.settings
        small = settings.campaigns.model_copy(update={"max_upload_bytes": 100})
        app.state.settings = settings.model_copy(update={"campaigns": small})
        try:
            too_large = await upload(admin, public_id, many(10))
            as_page = await upload(admin, public_id, many(10), script=False)
        finally:
            app.state.settings = settings

        assert too_large.status_code == 413, too_large.text
        assert "<html" not in too_large.text and "<strong>file</strong>" in too_large.text
        assert "larger than 100 bytes" in too_large.text
        assert (
            as_page.status_code == 413 and "<html" in as_page.text and "larger than 100 bytes" in as_page.text
        )
        not_a_table = await upload(
            admin, public_id, b"hello", filename="notes.txt", content_type="text/plain"
        )
        assert not_a_table.status_code == 400 and "<strong>file</strong>" in not_a_table.text
        no_phone = await upload(admin, public_id, many(1), phoneColumn="mobile")
        assert no_phone.status_code == 400 and "<strong>phoneColumn</strong>" in no_phone.text
        no_file = await upload(admin, public_id, b"", filename="")
        assert no_file.status_code == 400 and "<strong>file</strong>" in no_file.text
        assert (await api_campaign(client, tenant, public_id))["totalContact"] == 0

    async def test_a_form_arriving_in_small_pieces_is_read_as_a_whole(
        self,
        app: Any,
        client: httpx.AsyncClient,
        partner: Tenant,
        tenant: Tenant,
        admin: PortalClient,
        tmp_path: Path,
    ):
        public_id = (await sms_campaign(client, partner, tenant))["publicId"]
        url = f"{PAGES}/{public_id}/contacts"
        form = httpx.Request(
            "POST",
            f"http://testserver{url}",
            data={"csrf": admin.csrf, "phoneColumn": "Mobile"},
            files={"file": ("contacts.csv", many(40).replace(b"phone,", b"Mobile,"), "text/csv")},
        )
        body = form.read()

        async def pieces() -> AsyncIterator[bytes]:
            # Cut anywhere: inside part headers, boundaries and rows.
            for start in range(0, len(body), 7):
                yield body[start : start + 7]

        headers = {
            "HX-Request": "true",
            "X-CSRF-Token": admin.csrf,
            "content-type": form.headers["content-type"],
        }
        answer = await admin.http.post(url, content=pieces(), headers=headers)

        done = await imported(app, admin, answer, tmp_path)
        assert 'id="import-imported">40<' in done and 'id="import-invalid">0<' in done
        assert (await api_campaign(client, tenant, public_id))["totalContact"] == 40

    async def test_a_file_larger_than_a_form_may_be_is_taken_and_a_failed_import_says_why(
        self,
        app: Any,
        client: httpx.AsyncClient,
        partner: Tenant,
        tenant: Tenant,
        admin: PortalClient,
        tmp_path: Path,
    ):
        public_id = (await sms_campaign(client, partner, tenant))["publicId"]
        # Over the 1 MiB of a form: the portal's upload route takes OPENMMP_CAMPAIGNS__MAX_UPLOAD_BYTES.
        body = many(1) + b"85512999999,Big," + b"x" * (1 << 20) + b"\n"
        answer = await upload(admin, public_id, body)
        assert answer.status_code == 202, answer.text
        # Cancelled before its import runs: the import fails, and says why.
        assert (await admin.post(f"{PAGES}/{public_id}/cancel")).status_code == 303

        done = await imported(app, admin, answer, tmp_path)

        assert "hx-trigger" not in done and 'data-status="FAIL"' in done
        assert 'id="import-error"' in done and "the campaign is CANCELLED: it takes no contacts" in done
        assert 'id="import-report"' not in done
        page = await admin.get(f"{PAGES}/{public_id}")
        assert 'id="upload-form"' not in page.text and "takes no more contacts" in page.text

    async def test_uploading_needs_the_csrf_token(
        self, client: httpx.AsyncClient, partner: Tenant, tenant: Tenant, admin: PortalClient
    ):
        public_id = (await sms_campaign(client, partner, tenant))["publicId"]
        refused = await admin.http.post(
            f"{PAGES}/{public_id}/contacts",
            files={"file": ("contacts.csv", many(2), "text/csv")},
            headers={"HX-Request": "true"},
        )
        assert refused.status_code == 403 and "csrf" in refused.text


class TestRunning:
    async def test_broadcast_pause_resume_and_cancel_with_the_apis_progress(
        self,
        app: Any,
        client: httpx.AsyncClient,
        partner: Tenant,
        tenant: Tenant,
        admin: PortalClient,
        tmp_path: Path,
    ):
        public_id = await campaign_with_contacts(app, client, partner, tenant, admin, tmp_path, 30)
        base = f"{PAGES}/{public_id}"
        page = await admin.get(base)
        assert 'id="broadcast"' in page.text and 'id="cancel"' in page.text and 'id="pause"' not in page.text
        not_running = await admin.htmx("POST", f"{base}/pause")
        assert not_running.status_code == 409 and "<html" not in not_running.text
        assert 'role="alert"' in not_running.text

        sent = await admin.htmx("POST", f"{base}/broadcast", {"broadcastType": "2", "requestId": "r-1"})

        assert sent.status_code == 204 and sent.headers["hx-redirect"].startswith(base)
        assert (await api_campaign(client, tenant, public_id))["status"] == CampaignStatus.STARTED
        cid = await internal_id(app, public_id)
        assert await runner(app).step(cid) == 11
        await dispatched(app, cid)

        fragment = await admin.htmx("GET", f"{base}/progress")
        shown = await api_campaign(client, tenant, public_id)
        progress = shown["progress"]
        assert fragment.status_code == 200 and "<html" not in fragment.text
        assert counts_of(fragment.text) == {
            key: value
            for key, value in progress.items()
            if key not in ("total", "ratePerSecond", "etaSeconds")
        }
        assert (progress["notSend"], progress["sent"], progress["total"]) == (19, 11, 30)
        assert 'id="campaign-total">30<' in fragment.text and 'id="campaign-handled">11<' in fragment.text
        assert 'id="campaign-progress" max="30" value="11"' in fragment.text
        assert f'id="campaign-rate">{progress["ratePerSecond"]:g} per second<' in fragment.text
        assert f'id="campaign-eta">{progress["etaSeconds"]} s<' in fragment.text
        assert 'hx-trigger="every 2s"' in fragment.text and f'data-status="{shown["cause"]}"' in fragment.text
        assert 'id="pause"' in fragment.text and 'id="resume"' not in fragment.text

        paused = await admin.post(f"{base}/pause")
        assert paused.status_code == 303
        shown = await api_campaign(client, tenant, public_id)
        assert (shown["status"], shown["reason"]) == (CampaignStatus.PAUSED, "paused by the company")
        page = await admin.get(base)
        assert 'id="campaign-reason"' in page.text and "paused by the company" in page.text
        assert (
            'id="resume"' in page.text and 'id="pause"' not in page.text and 'id="broadcast"' not in page.text
        )
        assert await runner(app).step(cid) == 0

        resumed = await admin.htmx("POST", f"{base}/resume")
        assert resumed.status_code == 204
        assert (await api_campaign(client, tenant, public_id))["status"] == CampaignStatus.STARTED

        cancelled = await admin.htmx("POST", f"{base}/cancel")
        assert cancelled.status_code == 204
        shown = await api_campaign(client, tenant, public_id)
        assert shown["status"] == CampaignStatus.CANCELLED
        closed = await admin.htmx("GET", f"{base}/progress")
        assert "hx-trigger" not in closed.text and 'data-status="CANCELLED"' in closed.text
        assert not re.search(r'id="(pause|resume|cancel)"', closed.text)
        assert counts_of(closed.text)["notSend"] == shown["progress"]["notSend"] == 19
        again = await admin.htmx("POST", f"{base}/resume")
        assert again.status_code == 409 and "CANCELLED" in again.text

    async def test_a_scheduled_broadcast_and_bad_ones(
        self,
        app: Any,
        client: httpx.AsyncClient,
        partner: Tenant,
        tenant: Tenant,
        admin: PortalClient,
        tmp_path: Path,
    ):
        empty = (await sms_campaign(client, partner, tenant))["publicId"]
        no_contacts = await admin.htmx("POST", f"{PAGES}/{empty}/broadcast", {"broadcastType": "2"})
        assert no_contacts.status_code == 400 and "<strong>contacts</strong>" in no_contacts.text
        public_id = await campaign_with_contacts(app, client, partner, tenant, admin, tmp_path, 2)
        url = f"{PAGES}/{public_id}/broadcast"
        for form, field in (
            ({}, "broadcastType"),
            ({"broadcastType": "1"}, "scheduleTime"),
            ({"broadcastType": "1", "scheduleTime": "2001-01-01T09:00", "timeZone": "UTC"}, "scheduleTime"),
            ({"broadcastType": "1", "scheduleTime": "tomorrow", "timeZone": "UTC"}, "scheduleTime"),
            ({"broadcastType": "1", "scheduleTime": "2030-01-02T09:00", "timeZone": "Mars/Base"}, "timeZone"),
        ):
            refused = await admin.post(url, form)
            assert refused.status_code == 400, (form, refused.text)
            assert f"<strong>{field}</strong>" in refused.text, form
        assert (await api_campaign(client, tenant, public_id))["status"] == CampaignStatus.PENDING

        scheduled = await admin.post(
            url, {"broadcastType": "1", "scheduleTime": "2030-01-02T09:00", "timeZone": "Asia/Phnom_Penh"}
        )

        assert scheduled.status_code == 303, scheduled.text
        shown = await api_campaign(client, tenant, public_id)
        nine_in_phnom_penh = dt.datetime(2030, 1, 2, 2, 0, tzinfo=dt.UTC)
        assert shown["status"] == CampaignStatus.STARTED and shown["broadcastType"] == 1
        assert shown["scheduleTime"] == int(nine_in_phnom_penh.timestamp() * 1000)
        assert shown["timeZone"] == "Asia/Phnom_Penh"
        page = await admin.get(f"{PAGES}/{public_id}")
        assert 'id="campaign-schedule">2030-01-02 02:00:00 UTC<' in page.text

    async def test_changes_need_the_csrf_token(
        self,
        app: Any,
        client: httpx.AsyncClient,
        partner: Tenant,
        tenant: Tenant,
        admin: PortalClient,
        tmp_path: Path,
    ):
        public_id = await campaign_with_contacts(app, client, partner, tenant, admin, tmp_path, 2)
        for action, form in (("broadcast", {"broadcastType": "2"}), ("cancel", {})):
            refused = await admin.http.post(f"{PAGES}/{public_id}/{action}", data=form)
            assert refused.status_code == 403 and "csrf" in refused.text
        assert (await api_campaign(client, tenant, public_id))["status"] == CampaignStatus.PENDING


class TestIsolation:
    async def test_another_companys_campaign_is_a_404_everywhere(
        self,
        app: Any,
        client: httpx.AsyncClient,
        partner: Tenant,
        tenant: Tenant,
        admin: PortalClient,
        new_company: Any,
        sign_in_admin: Any,
        tmp_path: Path,
    ):
        campaign = await sms_campaign(client, partner, tenant)
        public_id = campaign["publicId"]
        answer = await upload(admin, public_id, many(2))
        [follow] = _HX_GET.findall(answer.text)
        await run_all(app, tmp_path)
        other = await sign_in_admin(await new_company())
        base = f"{PAGES}/{public_id}"

        for url in (base, f"{base}/progress", follow, f"{follow}/report"):
            assert (await other.get(url)).status_code == 404, url
        for action in ("pause", "resume", "cancel"):
            assert (await other.post(f"{base}/{action}")).status_code == 404, action
        assert (await other.post(f"{base}/broadcast", {"broadcastType": "2"})).status_code == 404
        assert (await upload(other, public_id, many(2))).status_code == 404
        account = campaign["channels"][0]["accountId"]
        assert (await other.htmx("GET", f"{PAGES}/new/templates?accountId={account}")).status_code == 404
        assert public_id not in (await other.get(PAGES)).text
        # Nor is one campaign's import shown under another of the company's campaigns.
        second = (await sms_campaign(client, partner, tenant))["publicId"]
        assert (await admin.get(follow.replace(public_id, second))).status_code == 404
        shown = await api_campaign(client, tenant, public_id)
        assert (shown["status"], shown["totalContact"]) == (CampaignStatus.PENDING, 2)
