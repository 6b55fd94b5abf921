"""All configuration, read once from `OPENMMP_*` environment variables (and a `.env` file if present)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from openmmp.kit.http import HttpClient
from openmmp.providers.base import Provider, ProviderContext
from openmmp.providers.registry import REGISTRY


def _not_above(model: BaseModel, group: str, low: str, high: str) -> None:
    """Raise a ValueError naming both settings when `low` is greater than `high`."""
    first, second = getattr(model, low), getattr(model, high)
    if first > second:
        name = f"OPENMMP_{group}__".upper() if group else "OPENMMP_"
        raise ValueError(f"{name}{low.upper()} ({first}) must not exceed {name}{high.upper()} ({second})")


def _prefix(provider: Provider) -> str:
    """A provider's settings prefix: its name in snake case (`viber-bot` → `viber_bot`)."""
    return provider.name.replace("-", "_")


class ProviderSettingsBase(BaseModel):
    """Upstream base URLs and each provider's own options; the operator's, never a tenant's.

    One field `{name}_base_url` per registered provider (empty: the built-in simulator in sandbox mode,
    else the real upstream) and `{name}_{option}` for each field of its `options_model`, e.g.
    `OPENMMP_PROVIDERS__VIBER_CALLBACK_SECRET`. Built from the registry, so a new provider brings its own.
    """

    timeout_seconds: float = 10.0
    allowed_hosts: str = Field(
        default="",
        description="Comma-separated hosts (names or addresses) that channels' credentials may name "
        "although they are private, e.g. the operator's own SMSC; any other must be public.",
    )

    @property
    def allowed_host_list(self) -> list[str]:
        return [host.strip() for host in self.allowed_hosts.split(",") if host.strip()]

    def base_url(self, provider: Provider) -> str:
        return str(getattr(self, f"{_prefix(provider)}_base_url"))

    def options(self, provider: Provider) -> dict[str, Any]:
        """The provider's options by their own names (without the prefix)."""
        if provider.options_model is None:
            return {}
        return {
            name: getattr(self, f"{_prefix(provider)}_{name}") for name in provider.options_model.model_fields
        }

    def simulator_options(self) -> dict[str, dict[str, Any]]:
        """The options the operator set, by provider name, for `SimulatorConfig.options`: a simulator
        takes its provider's options as knobs, so that both sides agree (e.g. on a callback secret)."""
        chosen: dict[str, dict[str, Any]] = {}
        for provider in REGISTRY.providers:
            if provider.options_model is None:
                continue
            defaults = provider.options_model()
            options = self.options(provider)
            changed = {k: v for k, v in options.items() if v != getattr(defaults, k)}
            if changed:
                chosen[provider.name] = changed
        return chosen


def _provider_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for provider in REGISTRY.providers:
        prefix = _prefix(provider)
        fields[f"{prefix}_base_url"] = (
            str,
            Field(default="", description=f"{provider.title} base URL (default {provider.default_base_url})"),
        )
        if provider.options_model is not None:
            for name, info in provider.options_model.model_fields.items():
                fields[f"{prefix}_{name}"] = (info.annotation, info)
    return fields


class LimitSettingsBase(BaseModel):
    """Upstream limits (`OPENMMP_LIMITS__*`): `{name}_requests` per `{name}_window_seconds` for each
    registered provider, defaulting to its published limit; a channel's `rateLimitPerSecond` overrides."""

    safety: float = Field(default=0.95, gt=0, le=1, description="Share of a limit we use")

    def of(self, provider: Provider) -> tuple[float, float]:
        """(requests, window seconds) for `provider`."""
        prefix = _prefix(provider)
        return float(getattr(self, f"{prefix}_requests")), float(getattr(self, f"{prefix}_window_seconds"))


def _limit_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for provider in REGISTRY.providers:
        prefix, limit = _prefix(provider), provider.rate_limit
        fields[f"{prefix}_requests"] = (
            int,
            Field(
                default=limit.requests,
                ge=1,
                description=f"{provider.title}: requests per window per {limit.per}",
            ),
        )
        fields[f"{prefix}_window_seconds"] = (float, Field(default=limit.window_seconds, gt=0))
    return fields


if TYPE_CHECKING:
    ProviderSettings = ProviderSettingsBase
    LimitSettings = LimitSettingsBase
else:
    ProviderSettings = create_model("ProviderSettings", __base__=ProviderSettingsBase, **_provider_fields())
    LimitSettings = create_model("LimitSettings", __base__=LimitSettingsBase, **_limit_fields())


class CallbackSettings(BaseModel):
    """Provider callbacks (`OPENMMP_CALLBACKS__*`)."""

    event_retention_days: float = Field(
        default=30,
        gt=0,
        description="Raw callback events are kept this long, then pruned. It is also the replay window: an "
        "inbound message, a channel or template event or a ping whose upstream time is older is answered "
        "and not applied (its record of having been seen may be gone).",
    )
    batch_max: int = Field(
        default=200,
        ge=1,
        le=5000,
        description="At most this many callbacks applied together in one write transaction.",
    )
    prune_batch: int = Field(default=5000, ge=1, description="Old raw events deleted per sweep at most.")


class ChannelSetupSettings(BaseModel):
    """Channel set-up with the upstream (`OPENMMP_CHANNEL_SETUP__*`)."""

    max_attempts: int = Field(
        default=6, ge=1, description="Tries before a new channel is REJECT (a working one stays LAUNCH)"
    )
    batch_size: int = Field(default=20, ge=1, le=1000, description="Channels set up per round")
    lease_seconds: float = Field(default=60.0, gt=0, description="How long a claimed set-up is reserved")
    retry_max_seconds: float = Field(default=60.0, gt=0, description="Longest wait between two tries")


class CampaignSettings(BaseModel):
    """Bulk campaigns (`OPENMMP_CAMPAIGNS__*`)."""

    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1,
        description="Largest contacts file a campaign takes in one upload (a CSV or XLSX, streamed to disk)",
    )
    upload_timeout_seconds: float = Field(
        default=900.0, gt=0, description="Time a contacts file may take to arrive (else 408)"
    )
    import_rows_per_step: int = Field(
        default=5000, ge=1, le=100_000, description="Contact rows an import reads and stores per step"
    )
    queue_ahead_seconds: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="A running campaign keeps this many seconds of its channel's limit in the outbox (a "
        "pause or a cancel takes effect within them)",
    )
    tick_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often the runner tops up each running campaign"
    )
    auto_pause_failure_rate: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A campaign pauses itself when this share of its recent settled sends failed (1: never)",
    )
    auto_pause_window: int = Field(
        default=200, ge=1, description="The recent sends (since its last start or resume) a campaign watches"
    )
    events_interval_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often a campaign's event stream looks for progress"
    )
    auto_pause_min_sends: int = Field(
        default=50, ge=1, description="Settled sends among them before the failure rate counts"
    )

    @model_validator(mode="after")
    def _window_holds_the_minimum(self) -> CampaignSettings:
        _not_above(self, "campaigns", "auto_pause_min_sends", "auto_pause_window")
        return self


class TaskSettings(BaseModel):
    """Background tasks: long work such as bulk checks and exports, run in steps (`OPENMMP_TASKS__*`)."""

    lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a claimed task is reserved; each committed step renews it. A step running "
        "longer is cut and tried again (by then another worker may have taken the task over).",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        description="Failed tries of one step in a row (unexpected errors, retries the task asked for "
        "without a time) at which an unexpected error ends the task FAIL",
    )
    retry_max_seconds: float = Field(default=300.0, gt=0, description="Longest wait between two tries")
    concurrency: int = Field(default=4, ge=1, le=1000, description="Tasks run at once per worker process")
    time_slice_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A task runs steps this long, then lets the tasks waiting (other companies' first) "
        "have their turn before its next",
    )
    retention_days: float = Field(
        default=7,
        gt=0,
        description="DONE and FAIL tasks, with their result files, are deleted this long after they ended",
    )


class PortalSettings(BaseModel):
    """The web portal at /portal (`OPENMMP_PORTAL__*`)."""

    session_hours: float = Field(default=12, gt=0, description="A sign-in lasts this long")
    setup_link_hours: float = Field(
        default=24,
        gt=0,
        description="A one-time password set-up link (`openmmp portal link`) works this long",
    )
    max_failed_sign_ins: int = Field(
        default=10, ge=1, description="Wrong passwords for one e-mail address in 15 minutes before a wait"
    )


class DispatchSettings(BaseModel):
    """How workers claim and send (`OPENMMP_DISPATCH__*`)."""

    batch_size: int = Field(default=200, ge=1, le=5000, description="Jobs claimed per round")
    concurrency: int = Field(default=32, ge=1, description="Upstream requests in flight per worker process")
    rounds_in_flight: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Claim → send → record rounds under way at once per process: the next batch is sent "
        "while the last one is being recorded",
    )
    lease_seconds: float = Field(default=60.0, gt=0, description="How long a claimed job is reserved")
    max_attempts: int = Field(default=8, ge=1, description="Retryable failures before a message is FAIL")
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    rate_limited_delay_seconds: float = Field(default=1.0, gt=0)
    max_limit_wait_seconds: float = Field(default=5.0, ge=0, description="Longer waits hand jobs back")
    poll_min_seconds: float = Field(default=0.02, gt=0)
    poll_max_seconds: float = Field(default=0.5, gt=0)
    sweep_interval_seconds: float = Field(default=1.0, gt=0, description="Expiry and late-callback sweeps")
    limiter_unavailable_pause_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Sending pauses this long when the shared (Redis) limiter is unreachable",
    )
    unmatched_callback_max_age_seconds: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> DispatchSettings:
        _not_above(self, "dispatch", "poll_min_seconds", "poll_max_seconds")
        _not_above(self, "dispatch", "retry_base_seconds", "retry_max_seconds")
        # A round that waits for its rate limit past its lease lets another worker send the same jobs.
        _not_above(self, "dispatch", "max_limit_wait_seconds", "lease_seconds")
        return self


class ApiRateSettings(BaseModel):
    """Requests per API key (`OPENMMP_API_RATE__*`), over 429 with `Retry-After` (api.md §1).

    Held in Redis and shared by every API node when `OPENMMP_REDIS_URL` is set, in-process otherwise.
    The defaults are far above what one node serves, so only a runaway client meets them.
    """

    per_second: float = Field(
        default=5000.0, ge=0, description="Sustained requests per second per API key; 0 turns the limit off."
    )
    burst: int = Field(default=5000, ge=1, description="Requests a key may make at once after a quiet spell.")


class WebhookSettings(BaseModel):
    """Outbound webhook delivery (api.md §5). Env: `OPENMMP_WEBHOOKS__<FIELD>`."""

    allow_private: bool = Field(
        default=False,
        description="Let webhook URLs point at loopback, private and link-local addresses (never on the "
        "internet-facing deployments: it opens the server's network to its tenants).",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per attempt, connect to last byte.")
    concurrency: int = Field(default=32, ge=1, le=10_000, description="Requests in flight per process.")
    retry_schedule_s: list[float] = Field(
        default=[5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200],
        min_length=1,
        description="Seconds before retry n (±10 % jitter); the last interval repeats.",
    )
    max_attempts: int = Field(
        default=11,
        ge=1,
        description="Attempts a delivery gets; when the last fails it is FAILED (kept, replayable) and "
        "its message's later events go out. The default, with the default schedule: the first attempt "
        "and 10 retries over about 35 hours.",
    )
    endpoint_failed_after_s: float = Field(
        default=3 * 86400, gt=0, description="Continuous failure after which the endpoint goes FAILED."
    )
    poll_interval_min_s: float = Field(default=0.05, gt=0, description="Idle poll interval after work.")
    poll_interval_max_s: float = Field(default=2.0, gt=0, description="Longest idle poll interval.")
    batch_size: int = Field(default=200, ge=1, le=5_000, description="Deliveries claimed per batch.")
    batches_in_flight: int = Field(
        default=4, ge=1, le=64, description="Claimed batches delivered at once (a slow endpoint blocks one)."
    )
    lease_s: float = Field(
        default=120.0, gt=0, description="How long a claim lasts; a worker that dies loses it after this."
    )

    @model_validator(mode="after")
    def _consistent(self) -> WebhookSettings:
        _not_above(self, "webhooks", "poll_interval_min_s", "poll_interval_max_s")
        # A delivery still in flight when its claim lapses would be sent twice at once.
        _not_above(self, "webhooks", "timeout_seconds", "lease_s")
        if any(seconds <= 0 for seconds in self.retry_schedule_s):
            raise ValueError("OPENMMP_WEBHOOKS__RETRY_SCHEDULE_S: every interval must be positive")
        return self


class Settings(BaseSettings):
    """OpenMMP settings. Nested groups use `__`, e.g. `OPENMMP_PROVIDERS__VIBER_BASE_URL`."""

    model_config = SettingsConfigDict(
        env_prefix="OPENMMP_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; default: a SQLite file data/openmmp.db under the data folder.",
    )
    data_dir: Path = Field(default=Path("data"), description="Folder for the SQLite file and the secret.")
    secret_key: str = Field(
        default="",
        description="Server secret keying API-key hashes and credential encryption; generated when unset.",
    )
    sandbox: bool = Field(default=False, description="Built-in provider simulators; demo data on start.")
    host: str = "127.0.0.1"
    port: int = 8000
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="`openmmp worker` (and `openmmp serve`'s worker process n, from 0, on metrics_port + n): "
        "serve Prometheus /metrics on {host}:{metrics_port}; 0 = not at all.",
    )
    public_url: str = Field(
        default="",
        description="Base URL providers call back on; default http://{host}:{port}.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, description="Largest accepted request body.")
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Time a request's whole body may take to arrive (else 408)."
    )
    log_level: str = "INFO"
    db_pool_size: int = 10
    redis_url: str = Field(
        default="",
        description="Redis for rate limits shared by all worker processes; in-process limits when empty.",
    )
    providers: ProviderSettings = ProviderSettings()
    webhooks: WebhookSettings = WebhookSettings()
    webhook_allow_private: bool = Field(
        default=False,
        exclude=True,
        description="The old name of OPENMMP_WEBHOOKS__ALLOW_PRIVATE, read into it at start.",
    )
    dispatch: DispatchSettings = DispatchSettings()
    callbacks: CallbackSettings = CallbackSettings()
    channel_setup: ChannelSetupSettings = ChannelSetupSettings()
    tasks: TaskSettings = TaskSettings()
    campaigns: CampaignSettings = CampaignSettings()
    limits: LimitSettings = LimitSettings()
    api_rate: ApiRateSettings = ApiRateSettings()
    portal: PortalSettings = PortalSettings()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        # One flag: the old name only turns the new one on.
        if self.webhook_allow_private:
            self.webhooks = self.webhooks.model_copy(update={"allow_private": True})
        # An upstream request that outlives its round's lease can be sent again by another worker.
        if self.providers.timeout_seconds >= self.dispatch.lease_seconds:
            raise ValueError(
                f"OPENMMP_PROVIDERS__TIMEOUT_SECONDS ({self.providers.timeout_seconds}) must be below "
                f"OPENMMP_DISPATCH__LEASE_SECONDS ({self.dispatch.lease_seconds})"
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'openmmp.db').resolve()}"

    @cached_property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def provider_context(self, provider: Provider, http: HttpClient) -> ProviderContext:
        """What `provider` is handed at run time: its base URL (configured, else the built-in simulator in
        sandbox mode, else the real upstream), this platform's public URL and the provider's options."""
        base_url = self.providers.base_url(provider)
        if not base_url:
            base_url = (
                f"{self.resolved_public_url}/sim/{provider.name}"
                if self.sandbox
                else provider.default_base_url
            )
        return ProviderContext(
            http=http,
            base_url=base_url.rstrip("/"),
            public_url=self.resolved_public_url,
            sandbox=self.sandbox,
            options=self.providers.options(provider),
        )

    def provider_contexts(self, http: HttpClient) -> dict[str, ProviderContext]:
        """`provider_context` of every registered provider, by provider name."""
        return {p.name: self.provider_context(p, http) for p in REGISTRY.providers}
