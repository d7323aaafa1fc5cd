"""The one settings class. Every configurable value is read here and nowhere else."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "xxx"}


class Settings(BaseSettings):
    """Configuration from the environment and an optional `.env` file."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: str = Field(default="development", description="development | production")
    data_dir: Path = Field(default=Path("data"), description="Where the SQLite file, Chroma and models live")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")

    currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code the CRM's amounts are in (reports show it)"
    )

    chroma_path: Path | None = Field(
        default=None, description="Embedded Chroma folder; default data_dir/chroma"
    )
    chroma_host: str | None = Field(default=None, description="Chroma server host; switches to HttpClient")
    chroma_port: int = 8000

    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint; unset = embedded")
    llm_api_key: str | None = None
    llm_model: str | None = None
    llm_gguf_path: Path | None = Field(default=None, description="Use this GGUF instead of the packaged one")
    llm_timeout_s: float = 120.0
    llm_autostart: bool = Field(
        default=True,
        description="`valuechain serve` starts the embedded model server when LLM_BASE_URL is unset "
        "(false: chat is unavailable until an endpoint is configured)",
    )

    chat_turns_at_once: int = Field(
        default=1, ge=1, le=16,
        description="Chat turns at the model at once, over every API worker of the deployment; the others wait in "
        "one queue (the embedded model "
        "server has one slot per prompt shape, so parallel turns only evict each other's cache)",
    )
    chat_jobs: bool | None = Field(
        default=None,
        description="Each chat turn (web, API, Slack) is a procrastinate job that any API worker takes (a turn "
        "waiting for a worker survives the restart of the one that received it); needs PostgreSQL; unset: on "
        "with PostgreSQL; false: the receiving worker runs it (api.chat_jobs)",
    )
    chat_jobs_per_worker: int = Field(
        default=4, ge=0, le=64,
        description="With CHAT_JOBS: chat jobs one API worker holds at once (0: it takes none, only receives)",
    )
    run_stale_s: float = Field(
        default=15.0, ge=1.0, le=3600.0,
        description="A chat run whose API worker has sent no heartbeat for this long is marked interrupted "
        "by another worker (several workers on one database; api.runs)",
    )

    playbook_path: Path | None = Field(
        default=None, description="A user playbook YAML replacing the shipped tools/playbook.yaml"
    )

    agent_design: Literal["plan", "react"] = Field(
        default="plan",
        description="plan: plan -> execute -> answer (two model calls a turn); react: the tool-calling loop",
    )
    plan_exemplars: int = Field(default=4, ge=0, le=12, description="Planner exemplars retrieved per question")

    holdout_share: float = Field(
        default=0.10, ge=0.0, le=0.5,
        description="Share of eligible accounts held out of each action (control group; hash of account + action)",
    )
    recommendation_ttl_days: int = Field(
        default=30, ge=0, description="Pending recommendations older than this can no longer be decided (0 = never)"
    )

    api_max_json_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest JSON request body the API reads (413 above it)"
    )
    knowledge_upload_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024,
        description="Largest knowledge upload per request, all files together (413 above it); "
        "`valuechain knowledge ingest` has no cap",
    )
    knowledge_upload_max_chunks: int = Field(
        default=200, ge=1,
        description="Most chunks one knowledge upload may embed (413 above it, nothing ingested): "
        "about 20-40 s of embedding on two cores",
    )

    jobs_heartbeat_s: float = Field(
        default=5.0, gt=0, le=300, description="How often a running batch job (jobs/) touches its heartbeat"
    )
    jobs_stale_s: float = Field(
        default=60.0, gt=0, le=86400,
        description="A running job whose heartbeat is older than this is marked failed and retryable "
        "(its worker died); several heartbeats, so a busy worker is never mistaken for a dead one",
    )

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_approvers: str | None = Field(
        default=None,
        description='Slack users who may approve/reject, as "SLACK_USER_ID:name,..." (name is recorded as decided_by)',
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL (a proxy, or a fake in tests)"
    )

    demo_accounts: int = Field(default=2000, description="Accounts generated on first start")
    demo_seed: int = 7
    demo_as_of: str = Field(default="2026-09-30", description="Fixed end date of generated history")

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "production":
            for name in ("slack_signing_secret", "slack_bot_token", "llm_api_key"):
                value = getattr(self, name)
                if value is not None and value.strip().lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"{name} holds a placeholder value; set a real secret")
        return self

    @field_validator("slack_approvers")
    @classmethod
    def _check_slack_approvers(cls, value: str | None) -> str | None:
        parse_slack_approvers(value)  # a malformed entry fails at start, not at the first click
        return value

    @property
    def slack_approver_map(self) -> dict[str, str]:
        """SLACK_APPROVERS as {Slack user id: name}."""
        return parse_slack_approvers(self.slack_approvers)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'valuechain.db').resolve()}"

    @property
    def resolved_chroma_path(self) -> Path:
        return self.chroma_path or (self.data_dir / "chroma")


def parse_slack_approvers(value: str | None) -> dict[str, str]:
    """`"U123:alice, U456:bob"` → {"U123": "alice", "U456": "bob"}; a malformed entry is an error."""
    out: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in (value or "").split(","))):
        user_id, sep, name = (part.strip() for part in entry.partition(":"))
        if not sep or not user_id or not name or len(name) > 100:
            raise ValueError(f'SLACK_APPROVERS entry {entry!r} is not "SLACK_USER_ID:name"')
        out[user_id] = name
    return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
