"""Settings, read once from the environment and an optional .env file.

Explicit keyword arguments win over the environment, which wins over .env, which wins over
the defaults. Secrets are wrapped so that repr() and tracebacks never show them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    knowledge_dir: Path = Field(
        default=REPO_ROOT / "knowledge",
        validation_alias=AliasChoices("MADOGUCHI_KNOWLEDGE_DIR", "knowledge_dir"),
        description="Folder of the knowledge-base YAML files.",
    )
    db_path: Path = Field(
        default=Path("var/madoguchi.sqlite3"),
        validation_alias=AliasChoices("MADOGUCHI_DB_PATH", "db_path"),
        description="SQLite file for conversation state, event ids and the turn log.",
    )
    redis_url: str = Field(
        default="",
        validation_alias=AliasChoices("MADOGUCHI_REDIS_URL", "redis_url"),
        description="redis:// URL; when set, state is kept in Redis instead of SQLite.",
    )
    conversation_timeout_minutes: float = Field(
        default=30,
        gt=0,
        validation_alias=AliasChoices(
            "MADOGUCHI_CONVERSATION_TIMEOUT_MINUTES", "conversation_timeout_minutes"
        ),
        description="Minutes of silence after which a conversation starts afresh.",
    )
    handoff_timeout_minutes: float = Field(
        default=10,
        gt=0,
        validation_alias=AliasChoices(
            "MADOGUCHI_HANDOFF_TIMEOUT_MINUTES", "handoff_timeout_minutes"
        ),
        description="Minutes a hand-off may wait for staff before the resident gets the phone.",
    )
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("MADOGUCHI_HOST", "host"))
    port: int = Field(default=8000, validation_alias=AliasChoices("MADOGUCHI_PORT", "port"))
    log_level: str = Field(
        default="INFO", validation_alias=AliasChoices("MADOGUCHI_LOG_LEVEL", "log_level")
    )

    line_channel_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("LINE_CHANNEL_SECRET", "line_channel_secret")
    )
    line_channel_access_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("LINE_CHANNEL_ACCESS_TOKEN", "line_channel_access_token"),
    )
    line_api_url: str = Field(
        default="https://api.line.me",
        validation_alias=AliasChoices("MADOGUCHI_LINE_API_URL", "line_api_url"),
    )
    line_data_api_url: str = Field(
        default="https://api-data.line.me",
        validation_alias=AliasChoices("MADOGUCHI_LINE_DATA_API_URL", "line_data_api_url"),
    )
    line_push_fallback: bool = Field(
        default=True,
        validation_alias=AliasChoices("MADOGUCHI_LINE_PUSH_FALLBACK", "line_push_fallback"),
    )

    slack_signing_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "slack_signing_secret"),
    )
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "slack_bot_token")
    )
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "slack_app_token")
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        validation_alias=AliasChoices("MADOGUCHI_SLACK_API_URL", "slack_api_url"),
    )
    slack_staff_channel: str = Field(
        default="",
        validation_alias=AliasChoices("MADOGUCHI_SLACK_STAFF_CHANNEL", "slack_staff_channel"),
    )

    @property
    def line_enabled(self) -> bool:
        return bool(self.line_channel_secret and self.line_channel_access_token)

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_signing_secret and self.slack_bot_token)
