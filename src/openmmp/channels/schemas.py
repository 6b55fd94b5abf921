from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import (
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from openmmp.channels.credentials import credentials_json_schema
from openmmp.kit.schemas import RequestModel, ResponseModel
from openmmp.kit.validators import Country, HttpUrl
from openmmp.kit.zones import ClockTime, TimeZoneName, country_zone
from openmmp.providers.applications import Application

CredentialsInput = Annotated[dict[str, Any], WithJsonSchema(credentials_json_schema())]


class FallbackTarget(RequestModel):
    account_id: str = Field(min_length=1, max_length=36)


class ChannelFallback(RequestModel):
    """A channel's default fallback: the same message, to these channels in order."""

    channels: list[FallbackTarget] = Field(min_length=1, max_length=5)
    fallback_after_seconds: int | None = Field(
        default=None, ge=1, le=604_800, description="Not DELIVERED within this time: try the next channel"
    )


class QuietHours(RequestModel):
    """Hours of each day a campaign sends nothing on the channel (transactional sends go on)."""

    start: ClockTime = Field(description="Quiet from (HH:MM, 24-hour)")
    end: ClockTime = Field(description="Until (HH:MM); before `start`, the hours span midnight")
    time_zone: TimeZoneName | None = Field(
        default=None, description="IANA zone of the hours; default: that of the channel's `defaultCountry`"
    )


class ChannelSettings(RequestModel):
    default_country: Country | None = Field(
        default=None, description="Region for national phone numbers, e.g. KH (then 012345678 → 85512345678)."
    )
    rate_limit_per_second: float | None = Field(
        default=None,
        gt=0,
        le=100_000,
        description="Sends per second; default: the upstream's published limit.",
    )
    sender_name: str | None = Field(default=None, min_length=1, max_length=28)
    sender_avatar: HttpUrl | None = None
    fallback: ChannelFallback | None = Field(
        default=None, description="Channels to try next for sends that name none (see Broadcast Message)"
    )
    quiet_hours: QuietHours | None = Field(
        default=None, description="Daily hours in which campaigns on the channel wait (e.g. 21:00–08:00)"
    )

    @model_validator(mode="after")
    def _quiet_hours_have_a_zone(self) -> ChannelSettings:
        quiet = self.quiet_hours
        if quiet is not None and quiet.time_zone is None:
            zone = country_zone(self.default_country) if self.default_country else None
            if zone is None:
                raise ValueError(
                    "quietHours.timeZone is required: the channel has no defaultCountry of a single zone"
                )
            self.quiet_hours = quiet.model_copy(update={"time_zone": zone})
        return self


class CreateChannelRequest(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    application_id: Application
    credentials: CredentialsInput
    webhook_url: HttpUrl | None = None
    settings: ChannelSettings = ChannelSettings()
    company_id: str | None = Field(
        default=None,
        max_length=36,
        description="Partner keys only: the company (its `companyPublicId`) the channel is for. Channels "
        "whose upstream identity the operator assigns (Viber Business Messages `serviceId`) are created "
        "this way; a company's own key gets 403 for them.",
    )


class EditChannelRequest(RequestModel):
    """Only the fields given change. `credentials` replaces the stored set as a whole."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    credentials: CredentialsInput | None = None
    webhook_url: HttpUrl | None = None
    settings: ChannelSettings | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> EditChannelRequest:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class ChannelResponse(ResponseModel):
    """ResponseChannelInfo: a channel as its company sees it (never its credentials)."""

    public_id: str = Field(description="The channel's id, the accountId in URLs")
    name: str
    application_id: int
    type: int = Field(description="1 OA (addressed by phone), 2 BOT (addressed by conversation)")
    status: int = Field(description="1 REQUEST, 2 PROCESSING, 3 LAUNCH, 4 SUSPEND, 5 REJECT, 6 ACCEPT")
    webhook_url: str | None
    settings: dict[str, Any]
    created_date: int


class ChannelSaved(ChannelResponse):
    webhook_secret: str | None = Field(
        default=None, description="Present only when this call created the channel's webhook secret."
    )


def _unset(value: object) -> bool:
    return value is None


class CommonGetChannelStatusResponse(ResponseModel):
    public_id: str
    application_id: int
    status: int = Field(description="1 REQUEST, 2 PROCESSING, 3 LAUNCH, 4 SUSPEND, 5 REJECT, 6 ACCEPT")
    cause: str | None = None
    verification: str | None = Field(
        default=None,
        description="Channels whose upstream account the platform runs (RCS agents): the upstream's "
        "verification state of the brand, e.g. UNVERIFIED, PENDING, VERIFIED. Absent for other channels.",
        exclude_if=_unset,
    )
    launches: dict[str, str] | None = Field(
        default=None,
        description="Channels whose upstream account the platform runs (RCS agents): the launch state in "
        'each region, e.g. {"asia-pacific": "LAUNCHED"}. Absent for other channels.',
        exclude_if=_unset,
    )


MAX_TEST_PHONES = 20
MAX_BULK_PHONES = 50_000


class ChannelTestRequest(RequestModel):
    """Phones to invite as test devices: an account not launched yet reaches these only."""

    phones: list[str] = Field(min_length=1, max_length=MAX_TEST_PHONES)


class ChannelTestResult(ResponseModel):
    phone: str
    status: str = Field(description="INVITED, EXISTED (a test device already) or FAIL")
    cause: str | None = None


class ChannelTestResponse(ResponseModel):
    public_id: str
    phones: list[ChannelTestResult]


class CheckPhoneCapabilitiesResponse(ResponseModel):
    phone: str
    is_rcs_enabled: bool = Field(description="The channel can reach this phone now")
    features: list[str] = Field(description="What the phone's messaging app supports, in upstream words")


class CheckBulkPhonesRequest(RequestModel):
    """Phones to check in the background; the result file has one row per phone, in this order."""

    phones: list[str] = Field(min_length=1, max_length=MAX_BULK_PHONES)


class SetWebhookRequest(RequestModel):
    url: HttpUrl
    secret: str | None = Field(
        default=None,
        description="A Standard Webhooks secret `whsec_<base64>` of your choosing (e.g. one for all your "
        "channels). Without it the channel keeps its current secret, or gets a new one if it has none.",
    )
    rotate_secret: bool = Field(
        default=False, description="Replace the channel's secret with a new one (ignored with `secret`)."
    )

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str | None) -> str | None:
        if value is None:
            return None
        raw = value.removeprefix("whsec_")
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("must be whsec_ followed by base64") from exc
        if not value.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise ValueError("must be whsec_ followed by the base64 of 24 to 64 random bytes")
        return value


class SetWebhookResponse(ResponseModel):
    url: str
    secret: str = Field(description="Signs every webhook of the channel (Standard Webhooks).")
    status: int = Field(description="1 ACTIVATED, 2 FAILED, 3 BLOCKED")


class ChanelOnboardGenerateTokenRequest(RequestModel):
    """Start making a channel through its upstream's sign-up (the MMP name, spelled as published)."""

    application_id: Application = Field(
        description="The channel's application; only those whose upstream hands out accounts through a "
        "sign-up (WhatsApp: Embedded Signup)."
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The new channel's name; default: its upstream's.",
    )
    webhook_url: HttpUrl | None = Field(default=None, description="The new channel's webhook URL.")


class ChanelOnboardGenerateTokenResponse(ResponseModel):
    token: str = Field(
        description="Opaque and single-use: it makes one channel at most, for this company, until "
        "`expiredAt`. The sign-up carries it (`state`)."
    )
    url: str = Field(
        description="Where the company's admin signs up (the upstream's sign-up page); at the end the "
        "browser is sent to `{public URL}/onboard/{provider}/callback`, which makes the channel."
    )
    expired_at: int = Field(description="When the token stops working (epoch ms).")
