"""``SessionConfig``: the ``ai_session`` configuration section.

Bound by the framework from the ``ai_session:`` block of ``application.yaml``, its
profiles and ``LEX_AI_SESSION__<FIELD>`` environment variables (env wins over YAML).
Every value is checked when the config is built; a bad value raises
:class:`~lexigram.contracts.exceptions.config.ConfigurationError` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar
from urllib.parse import urlsplit

from lexigram.config import BaseConfig
from lexigram.contracts.core.config import ConfigIssue, Environment
from lexigram.contracts.exceptions.config import ConfigurationError
from lexigram.validation import Field, model_validator

__all__ = ["BUILTIN_BACKENDS", "TURN_STRATEGIES", "SessionConfig", "coerce_config"]

BUILTIN_BACKENDS = frozenset({"in_memory", "cache", "database"})
TURN_STRATEGIES = frozenset({"round_robin", "priority", "topic", "llm_directed"})
_SAMESITE = frozenset({"lax", "strict", "none"})
_SQL_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgresql+asyncpg", "postgres")
_REDIS_SCHEMES = ("redis", "rediss", "unix")

_INT_FIELDS: dict[str, int] = {
    # field -> smallest legal value
    "session_ttl": 0,
    "cleanup_interval_s": 1,
    "max_turns_per_session": 1,
    "max_sessions_per_user": 1,
    "max_checkpoints_per_session": 1,
    "max_branches_per_session": 0,
    "max_agents_per_group": 1,
    "purge_after_s": 0,
    "sweep_batch_size": 1,
    "redis_pool_size": 1,
    "db_pool_size": 1,
}
_BOOL_FIELDS = ("enabled", "consolidate_on_close", "allow_anonymous", "redis_cluster")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(init=False)
class SessionConfig(BaseConfig):
    """Configuration of the session subsystem (section ``ai_session``)."""

    config_section: ClassVar[str] = "ai_session"

    name: str = Field(default="ai-session")
    env: str | None = Field(default=None)
    enabled: bool = Field(default=True)
    backend: str = Field(default="in_memory")
    session_ttl: int = Field(default=86400)
    cleanup_interval_s: int = Field(default=600)
    max_turns_per_session: int = Field(default=1000)
    max_sessions_per_user: int = Field(default=100)
    auto_checkpoint_interval: int | None = Field(default=10)
    max_checkpoints_per_session: int = Field(default=50)
    max_branches_per_session: int = Field(default=10)
    max_agents_per_group: int = Field(default=10)
    default_turn_strategy: str = Field(default="round_robin")
    consolidate_on_close: bool = Field(default=True)
    default_system_prompt: str | None = Field(default=None)

    # web
    cookie_name: str | None = Field(default="lexigram_session")
    header_name: str = Field(default="X-Session-ID")
    cookie_secret: str | None = Field(default=None)
    cookie_path: str = Field(default="/")
    cookie_domain: str | None = Field(default=None)
    cookie_samesite: str = Field(default="lax")
    allow_anonymous: bool = Field(default=False)

    # backends
    redis_url: str = Field(default="redis://localhost:6379/0")
    redis_cluster: bool = Field(default=False)
    database_url: str = Field(default="sqlite+aiosqlite:///./lexigram_sessions.db")
    key_prefix: str = Field(default="lexigram:session")
    table_prefix: str = Field(default="ai_session_")
    redis_pool_size: int = Field(default=50)
    db_pool_size: int = Field(default=10)

    # sweeper
    purge_after_s: int = Field(default=7 * 86400)
    sweep_batch_size: int = Field(default=1000)

    @model_validator(mode="before")
    def _coerce_scalars(cls, data: dict[str, Any]) -> dict[str, Any]:
        # Runs before the framework's own coercion, whose errors do not name the field.
        data = dict(data)
        for name in _BOOL_FIELDS:
            if name in data:
                data[name] = _as_bool(name, data[name])
        for name, minimum in _INT_FIELDS.items():
            if name in data:
                data[name] = _as_int(name, data[name], minimum)
        return data

    @model_validator(mode="after")
    def _validate(self) -> SessionConfig:
        self._coerce_and_check()
        return self

    def _coerce_and_check(self) -> None:
        for name in _BOOL_FIELDS:
            setattr(self, name, _as_bool(name, getattr(self, name)))
        for name, minimum in _INT_FIELDS.items():
            setattr(self, name, _as_int(name, getattr(self, name), minimum))
        interval: Any = self.auto_checkpoint_interval
        self.auto_checkpoint_interval = (
            None
            if interval is None or interval == ""
            else _as_int("auto_checkpoint_interval", interval, 0)
        )
        for name in (
            "backend",
            "default_turn_strategy",
            "header_name",
            "cookie_path",
            "key_prefix",
            "name",
            "redis_url",
            "database_url",
            "cookie_samesite",
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                _fail(name, f"must be a non-empty string, got {value!r}")
        for name in (
            "cookie_name",
            "cookie_secret",
            "cookie_domain",
            "default_system_prompt",
            "env",
        ):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                _fail(name, f"must be a string or null, got {value!r}")
        if (
            not isinstance(self.table_prefix, str)
            or not self.table_prefix.replace("_", "a").isalnum()
        ):
            _fail("table_prefix", f"must be letters, digits and '_', got {self.table_prefix!r}")
        if self.cookie_name == "":
            self.cookie_name = None
        if self.default_turn_strategy not in TURN_STRATEGIES:
            _fail(
                "default_turn_strategy",
                f"unknown strategy {self.default_turn_strategy!r}; "
                f"expected one of {sorted(TURN_STRATEGIES)}",
            )
        self.cookie_samesite = self.cookie_samesite.lower()
        if self.cookie_samesite not in _SAMESITE:
            _fail(
                "cookie_samesite",
                f"must be one of {sorted(_SAMESITE)}, got {self.cookie_samesite!r}",
            )
        if self.env is not None:
            try:
                Environment(self.env)
            except ValueError:
                _fail("env", f"unknown environment {self.env!r}")
        self._check_backend()
        self._check_url("redis_url", _REDIS_SCHEMES)
        self._check_url("database_url", _SQL_SCHEMES)

    def _check_backend(self) -> None:
        from lexigram.ai.session.stores.registry import registered_backends

        known = registered_backends()
        if self.backend not in known:
            _fail("backend", f"unknown backend {self.backend!r}; expected one of {sorted(known)}")

    def _check_url(self, name: str, schemes: tuple[str, ...]) -> None:
        url = getattr(self, name)
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            _fail(name, f"malformed URL {url!r}: {exc}")
        if parts.scheme not in schemes:
            _fail(name, f"malformed URL {url!r}: scheme must be one of {list(schemes)}")
        if parts.scheme.startswith("sqlite"):
            if not url.startswith(parts.scheme + ":///"):
                _fail(name, f"malformed URL {url!r}: expected sqlite+aiosqlite:///<path>")
        elif parts.scheme != "unix" and not parts.hostname:
            _fail(name, f"malformed URL {url!r}: no host")

    @property
    def ttl_enabled(self) -> bool:
        """Whether sessions expire at all (``session_ttl`` > 0)."""
        return self.session_ttl > 0

    def validate_for_environment(self, env: Environment | None = None) -> list[ConfigIssue]:
        """Report settings that are unsafe for ``env`` (the active environment by default)."""
        target = env or self.environment
        issues: list[ConfigIssue] = []
        if target == Environment.PRODUCTION:
            if self.backend == "in_memory":
                issues.append(
                    ConfigIssue(
                        field="ai_session.backend",
                        message="the in-memory backend loses every session on restart",
                        suggestion="use backend 'cache' (Redis) or 'database' (SQL)",
                    )
                )
            if self.cookie_name is not None and not self.cookie_secret:
                issues.append(
                    ConfigIssue(
                        field="ai_session.cookie_secret",
                        message="session cookies need a signing secret in production",
                        suggestion="set LEX_AI_SESSION__COOKIE_SECRET to a long random value",
                    )
                )
        return issues

    def public_dict(self) -> dict[str, Any]:
        """The configured fields as a plain dict (no class variables, secret redacted)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if data.get("cookie_secret"):
            data["cookie_secret"] = "***"
        return data


def coerce_config(config: SessionConfig | dict[str, Any] | None) -> SessionConfig:
    """Return ``config`` as a :class:`SessionConfig`; a dict is validated field by field."""
    if config is None:
        return SessionConfig()
    if isinstance(config, SessionConfig):
        return config
    if isinstance(config, dict):
        known = {f.name for f in fields(SessionConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigurationError(
                f"ai_session: unknown configuration key(s): {', '.join(unknown)}"
            )
        return SessionConfig(**config)
    raise ConfigurationError(
        f"ai_session: expected a SessionConfig or a dict, got {type(config).__name__}"
    )


def _fail(name: str, problem: str) -> Any:
    raise ConfigurationError(f"ai_session.{name}: {problem}")


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return bool(_fail(name, f"must be a boolean, got {value!r}"))


def _as_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        _fail(name, f"must be an integer, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            _fail(name, f"must be an integer, got {value!r}")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        _fail(name, f"must be an integer, got {value!r}")
    if value < minimum:
        _fail(name, f"must be >= {minimum}, got {value}")
    return int(value)
