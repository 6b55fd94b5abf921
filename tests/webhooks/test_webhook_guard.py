import re
import socket

import httpx
import pytest
from tests.conftest import Tenant, bot_credentials

from openmmp.settings import Settings, WebhookSettings
from openmmp.webhooks.guard import TargetRefused, check_target, webhooks_allow_private

REFUSED = [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://127.9.9.9/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("https://192.168.1.10/hook", "private"),
    ("http://[fc00::1]/hook", "private"),
    ("http://[fd12:3456::1]/hook", "private"),
    ("http://169.254.1.1/hook", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
    ("http://[fd00:ec2::254]/latest", "cloud metadata"),
    ("http://100.100.100.200/latest", "cloud metadata"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://[::]/hook", "unspecified"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
    ("http://100.64.0.1/hook", "not a public address"),
    ("http://192.0.2.10/hook", "private"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://[64:ff9b::a00:1]/hook", "private"),
    ("http://[2002:a00:1::]/hook", "private"),
    ("http://localhost:9000/hook", "local name"),
    ("http://LOCALHOST./hook", "local name"),
    ("http://api.localhost/hook", "local name"),
    ("http://metadata.google.internal/computeMetadata", "local name"),
]


class TestAddresses:
    @pytest.mark.parametrize(("url", "reason"), REFUSED)
    async def test_the_servers_own_networks_are_refused(self, url: str, reason: str):
        with pytest.raises(TargetRefused, match=reason) as refused:
            await check_target(url, allow_private=False, name="webhookUrl")
        assert refused.value.status_code == 400
        assert refused.value.items[0].name == "webhookUrl"
        assert refused.value.items[0].code == "INVALID"

    @pytest.mark.parametrize(("url", "reason"), REFUSED)
    async def test_they_are_allowed_when_private_targets_are(self, url: str, reason: str):
        await check_target(url, allow_private=True)

    @pytest.mark.parametrize("url", ["https://8.8.8.8/hook", "http://[2001:4860:4860::8888]:8443/h"])
    async def test_public_addresses_are_allowed(self, url: str):
        await check_target(url, allow_private=False)


class TestNames:
    @pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f.1"])
    async def test_a_name_is_checked_by_what_it_resolves_to(self, host: str):
        with pytest.raises(TargetRefused, match=f"{host} resolves to 127.0.0.1, which is a loopback address"):
            await check_target(f"http://{host}/hook", allow_private=False)

    async def test_the_machines_own_name_is_refused(self):
        host = socket.gethostname()
        try:
            socket.getaddrinfo(host, 80)
        except OSError:
            pytest.skip(f"{host} does not resolve here")
        with pytest.raises(TargetRefused, match=re.escape(f"{host} resolves to")):
            await check_target(f"http://{host}:9000/hook", allow_private=False)

    async def test_a_name_that_does_not_resolve_is_refused_with_a_clear_message(self):
        with pytest.raises(TargetRefused, match=r"host no-such-host\.invalid does not resolve"):
            await check_target("https://no-such-host.invalid/hook", allow_private=False)

    @pytest.mark.parametrize(
        "url", ["https://hooks.example.com/mmp", "https://x.example/h", "https://example.org/"]
    )
    async def test_documentation_names_are_accepted_as_placeholders(self, url: str):
        await check_target(url, allow_private=False)


class TestUrlShape:
    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("ftp://8.8.8.8/hook", "only http"),
            ("file:///etc/passwd", "only http"),
            ("gopher://127.0.0.1/", "only http"),
            ("http:///path-only", "no host"),
            ("https://user:pass@8.8.8.8/hook", "credentials"),
            ("https://user@8.8.8.8/hook", "credentials"),
            ("http://8.8.8.8:99999/hook", "not a valid URL"),
        ],
    )
    @pytest.mark.parametrize("allow_private", [False, True])
    async def test_only_plain_http_urls_even_when_private_targets_are_allowed(
        self, url: str, reason: str, allow_private: bool
    ):
        with pytest.raises(TargetRefused, match=reason):
            await check_target(url, allow_private=allow_private)


class TestAllowPrivateSetting:
    def test_off_by_default(self):
        assert not webhooks_allow_private(Settings(_env_file=None))  # type: ignore[call-arg]

    @pytest.mark.parametrize(
        "env", ["OPENMMP_WEBHOOKS__ALLOW_PRIVATE", "OPENMMP_WEBHOOK_ALLOW_PRIVATE", "OPENMMP_SANDBOX"]
    )
    def test_either_flag_or_sandbox_turns_it_on(self, monkeypatch: pytest.MonkeyPatch, env: str):
        monkeypatch.setenv(env, "true")
        assert webhooks_allow_private(Settings(_env_file=None))  # type: ignore[call-arg]

    def test_the_old_name_sets_the_one_flag(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("OPENMMP_WEBHOOK_ALLOW_PRIVATE", "true")
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.webhooks.allow_private
        assert "webhook_allow_private" not in settings.model_dump()

    def test_the_group_field(self):
        assert webhooks_allow_private(Settings(webhooks=WebhookSettings(allow_private=True)))


CHANNELS = "/api/v1/channel"


class TestSettingARefusedUrl:
    async def test_create_names_webhook_url(self, client: httpx.AsyncClient, tenant: Tenant):
        body = {
            "name": "Bot",
            "applicationId": 10,
            "credentials": bot_credentials(),
            "webhookUrl": "http://127.0.0.1:9000/hook",
        }
        response = await client.post(CHANNELS, json=body, headers=tenant.headers)
        assert response.status_code == 400
        error = response.json()["errors"][0]
        assert error["name"] == "webhookUrl"
        assert error["code"] == "INVALID"
        assert "loopback" in error["message"]

    async def test_edit_names_webhook_url_and_changes_nothing(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        channel = await make_channel(tenant, webhookUrl="https://hooks.example.com/a")
        url = f"{CHANNELS}/{channel['publicId']}"
        response = await client.post(
            url, json={"name": "New", "webhookUrl": "http://10.0.0.8/hook"}, headers=tenant.headers
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == "webhookUrl"
        after = (await client.get(url, headers=tenant.headers)).json()
        assert (after["name"], after["webhookUrl"]) == ("Bot", "https://hooks.example.com/a")

    async def test_set_webhook_names_url(self, client: httpx.AsyncClient, tenant: Tenant, make_channel):
        channel = await make_channel(tenant)
        response = await client.post(
            f"{CHANNELS}/{channel['publicId']}/webhook",
            json={"url": "http://169.254.169.254/latest/meta-data"},
            headers=tenant.headers,
        )
        assert response.status_code == 400
        error = response.json()["errors"][0]
        assert (error["name"], error["code"]) == ("url", "INVALID")
        assert "cloud metadata" in error["message"]

    async def test_another_companys_channel_is_404_before_the_url_is_judged(
        self, client: httpx.AsyncClient, tenant: Tenant, new_company, make_channel
    ):
        other = await new_company()
        channel = await make_channel(other)
        response = await client.post(
            f"{CHANNELS}/{channel['publicId']}/webhook",
            json={"url": "http://127.0.0.1/"},
            headers=tenant.headers,
        )
        assert response.status_code == 404

    async def test_allowed_when_the_operator_allows_private_targets(
        self, hook_client: httpx.AsyncClient, owner: Tenant
    ):
        body = {
            "name": "Bot",
            "applicationId": 10,
            "credentials": bot_credentials(),
            "webhookUrl": "http://127.0.0.1:9000/hook",
        }
        response = await hook_client.post(CHANNELS, json=body, headers=owner.headers)
        assert response.status_code == 201, response.text
        assert response.json()["webhookUrl"] == "http://127.0.0.1:9000/hook"
