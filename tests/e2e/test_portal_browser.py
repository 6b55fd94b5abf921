"""The portal in a real browser (Debian's Chromium, driven by Playwright) against a real sandbox.

One `openmmp serve --sandbox` process per test worker, as `make run` starts it: its banner prints the
one-time set-up links of the demo company's admin and of the operator. The tests do the portal guides'
tasks end to end as those two people would: sign in, create a channel with its webhook, send a test
message and watch it reach READ, create an API key, create a template and have the operator approve it,
run a small campaign. With OPENMMP_PORTAL_SCREENSHOTS=<folder> they also save the README's screenshots.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect
from tests.browser import chromium, require_chromium
from tests.e2e.harness import Sandbox, WebhookReceiver, wait_until
from tests.portal.conftest import csrf_of

from openmmp.demo import ADMIN_EMAIL, OPERATOR_EMAIL

pytestmark = pytest.mark.e2e
PASSWORD = "a long sandbox passphrase"
SCREENSHOTS = os.environ.get("OPENMMP_PORTAL_SCREENSHOTS", "")
_LINK = re.compile(r"(\S+@\S+): choose a password at (http://\S+/portal/setup/\S+)")


class Portal:
    """The running sandbox, its people's passwords set, and a browser profile per person."""

    def __init__(self, sandbox: Sandbox, demo: dict[str, object], profiles: Path) -> None:
        self.sandbox = sandbox
        self.url = sandbox.url
        self.api_key = str(demo["apiKey"])
        self.channels: dict[str, str] = dict(demo["channels"])  # type: ignore[call-overload]
        self.profiles = profiles
        self.count = 0

    async def set_passwords(self) -> None:
        """Follow each banner link once, as the person would, and choose the password."""
        links = dict(_LINK.findall(self.sandbox.logs()))
        assert set(links) == {ADMIN_EMAIL, OPERATOR_EMAIL}, self.sandbox.logs()[-3000:]
        for link in links.values():
            async with httpx.AsyncClient(follow_redirects=False) as http:
                page = await http.get(link)
                form = {"csrf": csrf_of(page.text), "password": PASSWORD, "repeated": PASSWORD}
                assert (await http.post(link, data=form)).status_code == 303

    def browser(self, **options: object) -> AbstractAsyncContextManager[BrowserContext]:
        self.count += 1
        return chromium(self.profiles / f"profile-{self.count}", **options)

    async def sign_in(self, context: BrowserContext, email: str) -> Page:
        """Through the sign-in form, as a person types it."""
        page = context.pages[0] if context.pages else await context.new_page()
        page.on("pageerror", lambda error: pytest.fail(f"JavaScript error on {page.url}: {error}"))
        await page.goto(f"{self.url}/portal/")
        await expect(page).to_have_url(re.compile(r"/portal/login"))
        await page.get_by_label("E-mail address").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        return page


def _screenshot_path(name: str) -> str:
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{name}.png")


async def screenshot(page: Page, name: str) -> None:
    """The README's picture of this page, when asked for (OPENMMP_PORTAL_SCREENSHOTS)."""
    if SCREENSHOTS:
        await page.screenshot(path=_screenshot_path(name), full_page=False)


@pytest.fixture(scope="module")
async def portal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Portal]:
    require_chromium("the portal's browser tests cannot run")
    work = tmp_path_factory.mktemp("portal")
    sandbox = Sandbox(work)
    demo = await sandbox.start()
    try:
        running = Portal(sandbox, demo, work)
        await running.set_passwords()
        yield running
    finally:
        if sandbox.process is not None:
            sandbox.process.stop()


# Every page of a company's portal, as the navigation lists them.
PAGES = ["/", "/channels", "/keys", "/templates", "/campaigns", "/messages", "/webhooks", "/billing"]


class TestEveryPage:
    async def test_every_page_fits_a_phone_and_labels_every_field(self, portal: Portal):
        async with portal.browser(viewport={"width": 390, "height": 844}) as context:
            page = await portal.sign_in(context, ADMIN_EMAIL)
            for path in PAGES:
                response = await page.goto(f"{portal.url}/portal{path}")
                assert response is not None and response.status == 200, path
                overflow = await page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 1, f"{path} scrolls sideways on a phone by {overflow}px"
                unlabelled = await page.evaluate(
                    """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                    .filter(e => e.offsetParent !== null)
                    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                    .map(e => e.name || e.id)"""
                )
                assert unlabelled == [], f"{path}: fields without a label: {unlabelled}"
                assert await page.locator("h1").count() == 1, path

    async def test_the_keyboard_reaches_the_navigation_first(self, portal: Portal):
        async with portal.browser() as context:
            page = await portal.sign_in(context, ADMIN_EMAIL)
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.textContent") == "OpenMMP"


async def submit_template(portal: Portal, page: Page, account: str, name: str) -> str:
    """In the editor, as the admin: the live preview shows the sample values; returns the template's id."""
    await page.goto(f"{portal.url}/portal/templates/new")
    await page.locator("#f-name").fill(name)
    await page.locator("#f-accountId").select_option(account)
    await page.locator("#f-text").fill("Hello {{name}}, your code is {{code}}")
    await page.locator("#f-samples").fill("name=Dara\ncode=4321")
    await expect(page.locator("#template-preview")).to_contain_text("Hello Dara, your code is 4321")
    await screenshot(page, "template-editor")
    await page.locator("#save-template").click()
    await expect(page.locator("#template-status")).to_have_text(re.compile("REQUEST"))
    return page.url.split("?")[0].rsplit("/", 1)[-1]


async def approve(portal: Portal, context: BrowserContext, template_id: str) -> None:
    """The operator approves it from the review queue."""
    page = await portal.sign_in(context, OPERATOR_EMAIL)
    await page.goto(f"{portal.url}/portal/review")
    await expect(page.locator(f"#review-{template_id}")).to_be_visible()
    await screenshot(page, "review")
    await page.locator(f"#approve-{template_id}").click()
    await expect(page.get_by_role("status").first).to_contain_text("Approved")


class TestTemplates:
    async def test_the_admin_submits_a_template_and_the_operator_approves_it(self, portal: Portal):
        async with portal.browser() as admin_context, portal.browser() as operator_context:
            page = await portal.sign_in(admin_context, ADMIN_EMAIL)
            template_id = await submit_template(portal, page, portal.channels["RCS"], "Browser OTP")
            await approve(portal, operator_context, template_id)
            await page.reload()
            await expect(page.locator("#template-status")).to_have_text(re.compile("APPROVED"))


class TestRestarts:
    async def test_a_sign_in_outlives_a_restart_and_a_sigkill(self, portal: Portal):
        async with portal.browser() as context:
            page = await portal.sign_in(context, ADMIN_EMAIL)
            for sig in (signal.SIGINT, signal.SIGKILL):
                portal.sandbox.stop(sig)
                await portal.sandbox.start()
                await page.goto(f"{portal.url}/portal/keys")
                await expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
            banner = portal.sandbox.logs()
            assert f"{ADMIN_EMAIL}: sign in with the password you chose" in banner


class TestChannels:
    async def test_a_new_channel_with_a_webhook_sends_a_test_message_that_reaches_read(
        self, portal: Portal, receiver: WebhookReceiver
    ):
        async with portal.browser() as context:
            page = await portal.sign_in(context, ADMIN_EMAIL)
            await page.goto(f"{portal.url}/portal/channels")
            await page.locator("#new-channel").click()
            await page.locator("#f-applicationId").select_option("1")  # Viber Business Messages
            await page.locator("#choose-application button").click()
            await page.locator("#fill-sandbox").click()
            await page.locator("#f-name").fill("Browser Viber")
            await page.locator("#f-webhookUrl").fill(receiver.url)
            await screenshot(page, "channel-new")
            await page.locator("#create-channel").click()

            secret = await page.locator("#webhook-secret").inner_text()
            account = (await page.locator("#channel-id").inner_text()).strip()
            assert secret.startswith("whsec_")
            receiver.secrets[account] = secret
            # The channel's set-up with the upstream takes a moment: its status follows it live.
            await expect(page.locator("#channel-status")).to_have_text("LAUNCH", timeout=60_000)
            await page.locator("#f-phone").fill("+85512345671")
            await page.locator("#f-text").fill("Your test message from the portal")
            await page.locator("#send-test").click()
            await expect(page.locator("#test-status")).to_have_text("READ", timeout=60_000)
            await screenshot(page, "channel-test-send")
            message_id = (await page.locator("#test-message-id").inner_text()).strip()

            # The message log finds it by phone and shows its way to READ.
            await page.goto(f"{portal.url}/portal/messages")
            await page.locator("#message-search").fill("012 345 671")
            await page.locator("#message-search-submit").click()
            await page.locator(f"#message-results a[href$='{message_id}']").click()
            steps = page.locator("#timeline li")
            await expect(steps.last).to_have_attribute("data-status", "READ")
            assert await steps.first.get_attribute("data-status") == "PENDING"
            await screenshot(page, "message-timeline")

            # Its webhook deliveries, each with its attempts, and one sent again.
            await page.goto(f"{portal.url}/portal/webhooks?accountId={account}")
            await expect(page.locator("#webhook-table tbody tr")).to_have_count(3)
            await screenshot(page, "webhooks")
            await page.locator("#webhook-table tbody tr a").first.click()
            await expect(page.locator("#webhook-attempt-log")).to_contain_text("204")
            await page.locator("#replay").click()
            await expect(page.locator(".notice")).to_contain_text("again")

        def signed_statuses() -> list[int]:
            return [
                d.body["status"]
                for d in receiver.deliveries
                if d.signature_ok and d.body.get("messageId") == message_id
            ]

        await wait_until(lambda: len(signed_statuses()) >= 4, timeout=60, what="the webhooks and the replay")
        statuses = signed_statuses()
        assert sorted(statuses[:3]) == [2, 4, 5] and len(statuses) == 4  # SENT, DELIVERED, READ; one again


class TestApiKeys:
    async def test_a_new_key_is_shown_once_works_and_stops_working_when_revoked(self, portal: Portal):
        async with portal.browser() as context, httpx.AsyncClient(base_url=portal.url) as api:
            page = await portal.sign_in(context, ADMIN_EMAIL)
            await page.goto(f"{portal.url}/portal/keys")
            await page.locator("#f-name").fill("Browser key")
            await page.locator("#create-key").click()
            key = (await page.locator("#new-key").inner_text()).strip()
            await screenshot(page, "api-keys")
            channel = f"/api/v1/channel/{portal.channels['VIBER']}"
            assert (await api.get(channel, headers={"apiKey": key})).status_code == 200

            await page.goto(f"{portal.url}/portal/keys")
            assert key not in await page.content()
            page.once("dialog", lambda dialog: dialog.accept())
            await page.get_by_role("button", name="Revoke Browser key").click()
            await expect(page.locator(".notice")).to_contain_text("revoked")
            assert (await api.get(channel, headers={"apiKey": key})).status_code == 401


class TestCampaigns:
    async def test_a_small_campaign_from_an_uploaded_file_runs_to_done(self, portal: Portal, tmp_path: Path):
        rcs = portal.channels["RCS"]
        async with portal.browser() as admin_context, portal.browser() as operator_context:
            page = await portal.sign_in(admin_context, ADMIN_EMAIL)
            template_id = await submit_template(portal, page, rcs, "Browser campaign")
            await approve(portal, operator_context, template_id)

            await page.goto(f"{portal.url}/portal/campaigns/new")
            await page.locator("#f-name").fill("Browser campaign")
            await page.locator("#f-accountId").select_option(rcs)
            await page.locator("#f-templateId").select_option(template_id)
            await page.locator("#create-campaign").click()

            contacts = tmp_path / "contacts.csv"
            rows = [f"+8551234560{n},Customer {n},{1000 + n}" for n in range(1, 6)]
            contacts.write_text("phone,name,code\n" + "\n".join(rows) + "\n")
            await page.locator("#f-file").set_input_files(contacts)
            await page.locator("#upload").click()
            await expect(page.locator("#import-state")).to_have_attribute(
                "data-status", "DONE", timeout=60_000
            )
            await expect(page.locator("#import-imported")).to_have_text("5")

            await page.locator("#broadcast").click()
            status = page.locator("#campaign-status")
            await expect(status).to_have_attribute("data-status", "DONE", timeout=90_000)
            await expect(page.locator("#campaign-handled")).to_contain_text("5")
            await screenshot(page, "campaign")

            await page.goto(f"{portal.url}/portal/")
            await expect(page.get_by_role("img", name=re.compile("Demo RCS"))).to_be_visible()
            await screenshot(page, "dashboard")
            await page.set_viewport_size({"width": 390, "height": 844})
            await screenshot(page, "dashboard-phone")
            await page.set_viewport_size({"width": 1280, "height": 720})
            await page.goto(f"{portal.url}/portal/billing")
            await expect(page.locator("#summary-total")).to_have_text(re.compile(r"[1-9]"))
            await screenshot(page, "billing")
