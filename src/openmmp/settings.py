"""All configuration, read once from `OPENMMP_*` environment variables (and a `.env` file if present)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProviderSettings(BaseModel):
    """Upstream base URLs; the operator's, never a tenant's. Empty means: the built-in simulator."""

    viber_bot_base_url: str = ""
    viber_base_url: str = ""
    viber_callback_secret: str = Field(
        default="",
        description="Shared secret signing Viber Business Messages callbacks (agreed with the aggregator).",
    )
    timeout_seconds: float = 10.0


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
    public_url: str = Field(
        default="",
        description="Base URL providers call back on; default http://{host}:{port}.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, description="Largest accepted request body.")
    log_level: str = "INFO"
    db_pool_size: int = 10
    providers: ProviderSettings = ProviderSettings()

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'openmmp.db').resolve()}"

    @cached_property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
