"""``SessionConfig``: the ``ai_session`` configuration section.

Bound by the framework from the ``ai_session:`` block of ``application.yaml``, its
profiles and ``LEX_AI_SESSION__<FIELD>`` environment variables (env wins over YAML).
Every value is checked when the config is built; a bad value raises
:class:`~lexigram.contracts.exceptions.config.ConfigurationError` naming the field.
Unknown keys are refused (with a "did you mean" hint), a ``database_url`` or
``redis_url`` given without ``backend`` selects its backend, and URLs appear in
messages with their credentials redacted.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import orjson
from lexigram.config import BaseConfig
from lexigram.contracts.core.config import ConfigIssue, Environment
from lexigram.contracts.exceptions.config import ConfigurationError
from lexigram.validation import Field, model_validator

from lexigram.ai.session.backends import backend_names, canonical_name, find_backend
from lexigram.ai.session.config_urls import (
    CLUSTER_PREFIX_BRACES,
    database_url_problem,
    redis_url_problem,
    sqlite_database,
)
from lexigram.ai.session.encryption.keyring import parse_keys
from lexigram.ai.session.redaction import MASK, redact_text, redact_url
from lexigram.ai.session.validation import (
    MAX_DURATION_S,
    MAX_SAFE_INT,
    TABLE_PREFIX_RULE,
    table_prefix_ok,
)

__all__ = [
    "BUILTIN_BACKENDS",
    "TURN_STRATEGIES",
    "SessionConfig",
    "LAYERED_HINT",
    "LAYERED_STORAGE_FIELDS",
    "coerce_config",
    "known_backends",
    "layered_fields_left_unused",
    "register_backend_name",
    "unregister_backend_name",
]

#: The built-in backends: ``memory``, ``sql``, ``redis`` and their older names.
BUILTIN_BACKENDS = frozenset({"memory", "sql", "redis", "in_memory", "cache", "database"})
TURN_STRATEGIES = frozenset({"round_robin", "priority", "topic", "llm_directed"})
_SAMESITE = frozenset({"lax", "strict", "none"})
#: Backend names ``backend`` accepts: the built-in ones plus those registered by
#: ``lexigram.ai.session.stores.registry.register_backend`` (stores call in here,
#: the config never imports the stores).
_BACKEND_NAMES: set[str] = set(BUILTIN_BACKENDS)
#: The URL field of each URL-backed built-in backend.
_URL_FIELD = {
    "database": "database_url",
    "cache": "redis_url",
    "sql": "database_url",
    "redis": "redis_url",
}
#: The backend a URL field selects when ``backend`` is not given.
_URL_BACKEND = {"database_url": "sql", "redis_url": "redis"}
#: Class-level names ``model_dump()`` emits; accepted and ignored when passed back.
_DUMPED_EXTRAS = frozenset({"model_config", "config_section"})

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
    "anonymous_sessions_per_minute": 0,
    "max_anonymous_sessions": 0,
}
#: Durations, bounded so that a deadline or a purge cutoff stays a date the stores hold.
_MAX_INT = {"session_ttl": MAX_DURATION_S, "cleanup_interval_s": MAX_DURATION_S,
            "purge_after_s": MAX_DURATION_S}
#: Every other integer (the caps, the batch size, pool sizes, the anonymous bounds,
#: ``auto_checkpoint_interval``) is at most 2**53 - 1: the bound the stores check each
#: cap and limit against when it is used (``validation.check_count``). Larger, the
#: config was accepted and every call then failed naming an internal argument.
_MAX_COUNT = MAX_SAFE_INT
_BOOL_FIELDS = ("enabled", "consolidate_on_close", "allow_anonymous", "redis_cluster")
#: Text fields an environment variable may set to digits (read back as text, below).
_TEXT_FIELDS = (
    "name", "env", "key_prefix", "table_prefix", "default_system_prompt", "header_name",
    "cookie_name", "cookie_path", "cookie_domain", "scope_key", "cookie_samesite",
    "default_turn_strategy",
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(init=False)
class SessionConfig(BaseConfig):
    """Configuration of the session subsystem (section ``ai_session``)."""

    config_section: ClassVar[str] = "ai_session"

    name: str = Field(default="ai-session")
    env: str | None = Field(default=None)
    enabled: bool = Field(default=True)
    backend: str = Field(default="memory")
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
    cookie_secret: str | list[str] | None = Field(default=None)  # noqa: RUF009
    #: Key-encryption keys, newest first (``[{"id", "key"}]`` or ``"id:key,..."``).
    #: Empty: sessions are stored in plaintext. See docs/privacy.md.
    encryption_keys: str | list[Any] | None = Field(default=None)  # noqa: RUF009
    cookie_path: str = Field(default="/")
    cookie_domain: str | None = Field(default=None)
    cookie_samesite: str = Field(default="lax")
    allow_anonymous: bool = Field(default=False)
    anonymous_sessions_per_minute: int = Field(default=20)
    max_anonymous_sessions: int = Field(default=10000)
    scope_key: str = Field(default="ai_session")

    # backends
    redis_url: str = Field(default="redis://localhost:6379/0")
    redis_cluster: bool = Field(default=False)
    database_url: str = Field(default="sqlite+aiosqlite:///./lexigram_sessions.db")
    key_prefix: str = Field(default="lexigram:session")
    table_prefix: str = Field(default="ai_session_")
    redis_pool_size: int = Field(default=50)
    db_pool_size: int = Field(default=10)
    #: The chosen backend's own options; a plugin reads them in ``from_config`` and may
    #: judge them with ``options_problem`` (for ``sql``/``redis``: their block below).
    options: dict[str, Any] = Field(default_factory=dict)  # noqa: RUF009
    #: The ``sql:`` and ``redis:`` blocks (moved to their flat fields, then None).
    sql: dict[str, Any] | None = Field(default=None)  # noqa: RUF009
    redis: dict[str, Any] | None = Field(default=None)  # noqa: RUF009

    @classmethod
    def from_yaml(cls, *args: Any, **kwargs: Any) -> Self:
        """The framework's loader, after refusing variables that set a field two ways.

        ``LEX_AI_SESSION__COOKIE_SECRET`` beside ``LEX_AI_SESSION__COOKIE_SECRET__0``
        made the framework's environment source fail with a bare ``TypeError``, or drop
        the numbered ones silently, depending on the variables' order; a section that is
        not a mapping failed with a bare ``TypeError`` too.
        """
        _refuse_env_conflicts(os.environ)
        try:
            return super().from_yaml(*args, **kwargs)
        except TypeError as exc:
            # ``ai_session: sql`` in the YAML: the loader's ``cls(**section)`` fails bare.
            found = re.search(r"must be a mapping, not (\w+)", str(exc))
            if found is None:
                raise
            raise ConfigurationError(
                f"ai_session: must be a mapping, got {found.group(1)}"
            ) from None


    # sweeper
    purge_after_s: int = Field(default=7 * 86400)
    sweep_batch_size: int = Field(default=1000)

    @model_validator(mode="before")
    def _refuse_unknown_keys(cls, data: dict[str, Any]) -> dict[str, Any]:
        # The framework keeps unknown keyword arguments as attributes; a typo would
        # silently leave the default in place.
        known = [f.name for f in fields(cls)]
        data = _flatten_blocks({k: v for k, v in data.items() if k not in _DUMPED_EXTRAS})
        unknown = sorted(set(data) - set(known))
        if unknown:
            hints = []
            for key in unknown:
                near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hints.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            raise ConfigurationError(
                f"ai_session: unknown configuration key(s): {', '.join(hints)}"
            )
        return data

    @model_validator(mode="before")
    def _select_backend(cls, data: dict[str, Any]) -> dict[str, Any]:
        # A URL given without ``backend`` selects its backend; a URL that the
        # explicit backend would ignore is refused, naming both fields.
        data = _flatten_blocks(dict(data))
        given = [name for name in _URL_BACKEND if data.get(name) not in (None, "")]
        if "backend" not in data:
            if len(given) == 1:
                data["backend"] = _URL_BACKEND[given[0]]
                data = _flatten_blocks(data)  # ``options`` is now that backend's block
            elif len(given) > 1:
                _fail(
                    "backend",
                    "both ai_session.database_url and ai_session.redis_url are set; "
                    "set backend to 'sql' or 'redis'",
                )
            return data
        backend = data["backend"]
        if not isinstance(backend, str) or backend not in BUILTIN_BACKENDS:
            return data  # a user backend may read any field; a bad value is named later
        defaults = {name: _field_default(cls, name) for name in _URL_BACKEND}
        changed = [name for name in given if data[name] != defaults[name]]
        own = _URL_FIELD.get(backend)
        if changed and own not in changed:
            stray = changed[0]
            _fail_fields(
                ("backend", stray),
                f"backend {backend!r} does not use {stray} (set backend to "
                f"{_URL_BACKEND[stray]!r}, or remove {stray})",
            )
        return data

    @model_validator(mode="before")
    def _coerce_scalars(cls, data: dict[str, Any]) -> dict[str, Any]:
        # Runs before the framework's own coercion, whose errors do not name the field.
        data = _env_nulls(dict(data))
        for name in _BOOL_FIELDS:
            if name in data:
                data[name] = _as_bool(name, data[name])
        for name, minimum in _INT_FIELDS.items():
            if name in data:
                data[name] = _as_int(name, data[name], minimum)
        for name in _TEXT_FIELDS:
            if name in data:
                data[name] = _env_text(name, data[name])
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
            "scope_key",
            "cookie_path",
            "key_prefix",
            "name",
            "redis_url",
            "database_url",
            "cookie_samesite",
        ):
            _non_empty(name, getattr(self, name))
        self.cookie_secret = _cookie_secrets(self.cookie_secret)
        parse_keys(self.encryption_keys)  # refuses a bad entry, naming it (never the key)
        for name in (
            "cookie_name",
            "cookie_domain",
            "default_system_prompt",
            "env",
        ):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                _fail(name, f"must be a string or null, got {value!r}")
        _table_prefix("table_prefix", self.table_prefix)
        if self.cookie_name == "":
            self.cookie_name = None
        if self.cookie_domain == "":  # host-only, as null (an empty env var)
            self.cookie_domain = None
        self._check_web_fields()
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
        plugin = self._plugin_backend()
        self._check_options(plugin)
        if self.backend in BUILTIN_BACKENDS:
            self._check_builtin_urls()
        elif plugin is not None:
            self._check_plugin_url(plugin)

    def _check_web_fields(self) -> None:
        """What goes into HTTP headers as written: tokens and cookie attribute values.

        A ``;`` or a space there wrote attributes of its own into ``Set-Cookie``
        (``cookie_path: "/; Domain=evil.example"``), and a character outside Latin-1
        failed every response after the session was created.
        """
        if self.cookie_name is not None and not _HTTP_TOKEN.fullmatch(self.cookie_name):
            _fail("cookie_name", f"must be an HTTP token (letters, digits, {_TOKEN_MARKS}), "
                  f"got {self.cookie_name!r}")
        if not _HTTP_TOKEN.fullmatch(self.header_name):
            _fail("header_name", f"must be an HTTP token (letters, digits, {_TOKEN_MARKS}), "
                  f"got {self.header_name!r}")
        if not _COOKIE_PATH.fullmatch(self.cookie_path):
            _fail("cookie_path", "must be printable ASCII without ';', "
                  f"got {self.cookie_path!r}")
        if not self.cookie_path.startswith("/"):
            # Browsers ignore a Path attribute that does not (RFC 6265 5.2.4).
            _fail("cookie_path", f"must start with '/', got {self.cookie_path!r}")
        if self.allow_anonymous and self.cookie_name is None:
            _fail_fields(
                ("allow_anonymous", "cookie_name"),
                "anonymous sessions are tied to their caller by the signed session cookie, "
                "which cookie_name null (or \"\") turns off; set cookie_name, or "
                "allow_anonymous: false",
            )
        if self.cookie_domain is not None and not _COOKIE_DOMAIN.fullmatch(self.cookie_domain):
            _fail(
                "cookie_domain",
                f"must be a host name (an IDN in its xn-- form), got {self.cookie_domain!r}",
            )
        prompt = self.default_system_prompt
        if prompt is not None:
            try:
                prompt.encode("utf-8")
            except UnicodeEncodeError as exc:
                _fail("default_system_prompt", f"must be valid Unicode text: {exc.reason} "
                      f"at position {exc.start}")

    def _check_builtin_urls(self) -> None:
        """A built-in backend's URLs, by the SQL and Redis rules."""
        problem = database_url_problem(self.database_url)
        if problem is not None:
            _fail("database_url", problem)
        redis_problem = redis_url_problem(self.redis_url, cluster=self.redis_cluster)
        if redis_problem is not None:
            _fail_fields(*redis_problem)
        if self.redis_cluster and ("{" in self.key_prefix or "}" in self.key_prefix):
            _fail("key_prefix", CLUSTER_PREFIX_BRACES)

    def _check_plugin_url(self, plugin: Any) -> None:
        """The URL field a plugin reads, judged by the plugin alone.

        A field it does not read is its own business and not checked; its message may
        quote the URL, never with the password.
        """
        name = plugin.url_field
        if name not in _URL_BACKEND:
            return
        value = getattr(self, name)
        found = plugin.url_problem(value)
        if found is not None:
            if value == _field_default(type(self), name):  # never given: say so
                _fail(
                    name,
                    f"is not set; backend {self.backend!r} needs its own "
                    f"(the default {value!r} is the built-in backend's): {found}",
                )
            _fail(name, redact_text(str(found), [value]))

    def _check_options(self, plugin: Any) -> None:
        """``options`` is a mapping with string keys, judged by the plugin that reads it."""
        block = "options"
        if self.options is None:
            self.options = {}
        if not isinstance(self.options, dict):
            _fail(block, f"must be a mapping with string keys, got {type(self.options).__name__}")
        bad_keys = [k for k in self.options if not isinstance(k, str)]
        if bad_keys:  # the values are not shown: they may be secrets
            _fail(block, f"must be a mapping with string keys, got a key {bad_keys[0]!r}")
        if plugin is None:
            if self.options:
                _fail("options", f"backend {self.backend!r} takes no options block")
            return
        judge = getattr(plugin, "options_problem", None)
        found = judge(dict(self.options)) if callable(judge) else None
        if found is not None:
            key, problem = found
            text = redact_text(str(problem), _url_values(self.options))
            for secret in _secret_values(self.options):  # a value a plugin quoted
                text = text.replace(secret, MASK)
            _fail(f"{block}.{key}", text)

    def _plugin_backend(self) -> Any:
        """The installed or registered backend ``backend`` names (None for a built-in one).

        An unknown name is refused naming ``backend``; a plugin's ``url_problem``
        then judges the URL it reads (built-in backends' URLs are judged here, without
        importing a store).
        """
        if self.backend in BUILTIN_BACKENDS:
            return None
        problem = ""
        try:
            found = find_backend(self.backend)
        except Exception as exc:  # a plugin that does not import
            found, problem = None, f"backend {self.backend!r} could not be loaded: {exc}"
        if problem:
            _fail("backend", problem)
        if found is None and self.backend not in _BACKEND_NAMES:
            _fail(
                "backend",
                f"unknown backend {self.backend!r}; expected one of {sorted(known_backends())}",
            )
        return found

    @property
    def ttl_enabled(self) -> bool:
        """Whether sessions expire at all (``session_ttl`` > 0)."""
        return self.session_ttl > 0

    def keeps_nothing(self) -> bool:
        """Whether ``database_url`` is an in-memory SQLite database (gone with the process)."""
        return sqlite_database(self.database_url) == ":memory:"

    def validate_for_environment(self, env: Environment | None = None) -> list[ConfigIssue]:
        """Report settings that are unsafe for ``env`` (the active environment by default)."""
        target = env or self.environment
        issues: list[ConfigIssue] = []
        if target == Environment.PRODUCTION:
            if canonical_name(self.backend) == "memory":
                issues.append(
                    ConfigIssue(
                        field="ai_session.backend",
                        message="the in-memory backend loses every session on restart",
                        suggestion="use backend 'redis' or 'sql'",
                    )
                )
            if canonical_name(self.backend) == "sql" and self.keeps_nothing():
                issues.append(
                    ConfigIssue(
                        field="ai_session.database_url",
                        message="an in-memory SQLite database loses every session on restart",
                        suggestion="give a database file (sqlite+aiosqlite:///<path>) or a "
                        "PostgreSQL or MariaDB URL",
                    )
                )
            if self.cookie_name is not None and not self.cookie_secret:
                # Only SessionMiddleware needs it; it calls require_cookie_secret().
                issues.append(
                    ConfigIssue(
                        field="ai_session.cookie_secret",
                        message="SessionMiddleware will refuse to start without a cookie "
                        "signing secret in production",
                        severity="warning",
                        suggestion="set LEX_AI_SESSION__COOKIE_SECRET to a long random value",
                    )
                )
        return issues

    def check_environment(self, env: Environment | None = None) -> None:
        """Raise ``ConfigurationError`` listing the error-level issues for ``env``.

        What the provider runs at boot and ``SessionManager.open()`` on entry.
        """
        errors = [i for i in self.validate_for_environment(env) if i.severity == "error"]
        if errors:
            raise ConfigurationError(
                "ai_session: configuration not allowed in this environment: "
                + "; ".join(f"{i.field}: {i.message}" for i in errors),
                issues=errors,
            )

    def require_cookie_secret(self) -> str | list[str] | None:
        """The cookie signing secret, checked where cookies are actually signed.

        Returns ``cookie_secret`` (one secret, or a list newest first; None when
        unset outside production, or when
        cookies are disabled with ``cookie_name: null``). In production a missing
        secret raises ``ConfigurationError`` naming ``ai_session.cookie_secret``;
        an application that never builds ``SessionMiddleware`` is not affected.
        """
        if self.cookie_secret:
            return self.cookie_secret
        if self.cookie_name is not None and self.environment == Environment.PRODUCTION:
            _fail(
                "cookie_secret",
                "session cookies need a signing secret in production (set "
                "LEX_AI_SESSION__COOKIE_SECRET, or cookie_name: null to disable cookies)",
            )
        return None

    def public_dict(self) -> dict[str, Any]:
        """The fields as a plain dict, safe to show: secret and URL credentials redacted."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if data.get("cookie_secret"):
            data["cookie_secret"] = MASK
        if data.get("encryption_keys"):
            keys = parse_keys(data["encryption_keys"])
            data["encryption_keys"] = [f"{k.id}:{MASK}" for k in keys]
        for name in _URL_BACKEND:
            data[name] = redact_url(data[name])
        data["options"] = _masked(data.get("options") or {})
        return data

    def __repr__(self) -> str:
        """The fields with the secret and URL credentials redacted."""
        shown = ", ".join(f"{k}={v!r}" for k, v in self.public_dict().items())
        return f"{type(self).__name__}({shown})"


def coerce_config(config: SessionConfig | dict[str, Any] | None) -> SessionConfig:
    """Return ``config`` as a :class:`SessionConfig`; a dict is validated field by field."""
    if config is None:
        return SessionConfig()
    if isinstance(config, SessionConfig):
        return config
    if isinstance(config, dict):
        bad_keys = [key for key in config if not isinstance(key, str)]
        if bad_keys:
            raise ConfigurationError(
                f"ai_session: configuration keys must be strings, got {bad_keys[0]!r}"
            )
        return SessionConfig(**config)
    raise ConfigurationError(
        f"ai_session: expected a SessionConfig or a dict, got {type(config).__name__}"
    )


#: The settings that decide where sessions are stored.
LAYERED_STORAGE_FIELDS = ("backend", "database_url", "redis_url")
#: What to do about :func:`layered_fields_left_unused` (the hint of the warning that names them).
LAYERED_HINT = (
    "the config given in code replaces application.yaml and LEX_AI_SESSION__* "
    "variables; set these fields in it too, or build it with "
    "SessionConfig.from_env_profile() and change what you need"
)


def layered_fields_left_unused(config: SessionConfig) -> list[str]:
    """The storage fields that YAML / ``LEX_AI_SESSION__*`` set and ``config`` leaves otherwise.

    A config given in code (``SessionModule.configure(...)``, ``SessionManager.open(...)``)
    replaces the layered one; what it leaves unused is named by field (never by value: a
    URL may hold a password) so that the caller can log it. Backends are compared by
    their canonical name (``database`` and ``sql`` are one). Empty when the layered
    config cannot be read (a file or variable the caller did not ask to read).
    """
    if not any(k.startswith(_ENV_PREFIX) for k in os.environ) and not any(
        Path().glob("application*.y*ml")
    ):
        return []  # nothing layered to read (and no framework log line about reading it)
    try:
        layered = SessionConfig.from_env_profile()
    except Exception:
        return []
    default = SessionConfig()

    def value(source: SessionConfig, name: str) -> object:
        got = getattr(source, name)
        return canonical_name(got) if name == "backend" and isinstance(got, str) else got

    return [
        name
        for name in LAYERED_STORAGE_FIELDS
        if value(layered, name) != value(default, name)
        and value(layered, name) != value(config, name)
    ]


def known_backends() -> frozenset[str]:
    """Names ``SessionConfig.backend`` accepts (built in, installed and registered)."""
    return frozenset(_BACKEND_NAMES) | backend_names()


def register_backend_name(name: str) -> None:
    """Accept ``name`` as a backend (called by the stores' ``register_backend``)."""
    _BACKEND_NAMES.add(name)


def unregister_backend_name(name: str) -> None:
    """Stop accepting a registered backend name (built-in names stay)."""
    if name not in BUILTIN_BACKENDS:
        _BACKEND_NAMES.discard(name)


#: The options block of each built-in backend: ``ai_session.<block>.<key>`` and the
#: flat field it stands for (the flat fields stay accepted).
BACKEND_BLOCKS: dict[str, dict[str, str]] = {
    "sql": {"url": "database_url", "table_prefix": "table_prefix", "pool_size": "db_pool_size"},
    "redis": {
        "url": "redis_url",
        "cluster": "redis_cluster",
        "pool_size": "redis_pool_size",
        "key_prefix": "key_prefix",
    },
}


def _backend_block(data: dict[str, Any]) -> dict[str, Any]:
    """For ``sql`` and ``redis``, ``options`` is their block (``sql:`` / ``redis:``).

    Both given with different values is refused naming both (idempotent). A plugin's
    ``options`` stay as they are, for the plugin to read.
    """
    backend = data.get("backend")
    if not isinstance(backend, str):
        return data
    name = canonical_name(backend)
    if name in BACKEND_BLOCKS and data.get("options"):
        data = dict(data)
        options = data.pop("options")
        if data.get(name) not in (None, options):
            _fail_fields((name, "options"), "both are set, to different values; keep one")
        data[name] = options
    return data


def _masked(value: Any, depth: int = 0) -> Any:
    """A plugin's options as shown: values under a secret-looking key masked, URL
    credentials redacted, at every level of nested mappings and lists."""
    if depth > 32:  # deeper than any option block: shown as masked, not walked
        return MASK
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(k, str) and _secret_key(k) else _masked(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked(v, depth + 1) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def _option_texts(options: Any, key: Any = None, depth: int = 0) -> Iterator[tuple[Any, str]]:
    """Every text value in a plugin's options, at any depth, with the key it sits under
    (its mapping's key; the list's key for a list item)."""
    if depth > 32:  # deeper than any option block: not walked
        return
    if isinstance(options, str):
        yield key, options
    elif isinstance(options, dict):
        for name, value in options.items():
            yield from _option_texts(value, name, depth + 1)
    elif isinstance(options, list | tuple):
        for value in options:
            yield from _option_texts(value, key, depth + 1)


def _url_values(options: Any) -> list[str]:
    """The option values that look like URLs, at any depth (masked in a plugin's message)."""
    return [text for _, text in _option_texts(options) if "://" in text]


def _secret_values(options: Any) -> list[str]:
    """The texts under secret-looking keys, at any depth, longest first (at least 4
    characters, so that ordinary words of a message are not masked)."""
    found = [
        text
        for key, text in _option_texts(options)
        if isinstance(key, str) and _secret_key(key) and len(text) >= 4
    ]
    return sorted(found, key=len, reverse=True)


def _flatten_blocks(data: dict[str, Any]) -> dict[str, Any]:
    """``sql: {url: ...}`` / ``redis: {...}`` moved to their flat fields (idempotent).

    A key the block does not know, a bad value, or a flat field given with another
    value is refused naming the key as written (``sql.url``, ``options.url``); a
    non-empty block of another built-in backend than the chosen one is refused too.
    """
    data = _env_nulls(dict(data))  # ``LEX_AI_SESSION__SQL=null``: no block
    backend = data.get("backend")
    chosen = canonical_name(backend) if isinstance(backend, str) else None
    # Errors name a key as the user wrote it: ``options.url`` when ``options`` is the block.
    labels = {chosen: "options"} if data.get("options") and chosen not in data else {}
    data = _backend_block(data)
    if not any(name in data for name in BACKEND_BLOCKS):
        return data
    judged = _blocks_backend(data)
    data = dict(data)
    # A plugin that reads a flat URL field judges that URL itself (``url_problem``).
    built_in = not isinstance(backend, str) or backend in BUILTIN_BACKENDS
    for block in BACKEND_BLOCKS:
        if block not in data:
            continue
        options = data.pop(block)
        if options is None:
            continue
        label = labels.get(block, block)
        _move_block(data, block, label, options, urls=built_in)  # its keys first: a typo
        _check_block_owner(data, block, options, judged)
        if not built_in:
            _check_plugin_block_url(str(backend), block, label, options)
    return data


def _check_plugin_block_url(backend: str, block: str, label: str, options: dict[str, Any]) -> None:
    """A plugin's URL written in a block (``sql: {url: ...}``), judged by the plugin.

    Named as written (``sql.url``), as for a built-in backend; the flat field's own
    check runs later and names the flat field.
    """
    try:
        plugin = find_backend(backend)
    except Exception:  # a plugin that does not import is named later, under backend
        return
    if plugin is None:  # an unknown backend is named later, under backend
        return
    url_field = getattr(plugin, "url_field", None)
    for key, flat in BACKEND_BLOCKS[block].items():
        if flat != url_field or key not in options:
            continue
        value = options[key]
        found = plugin.url_problem(value)
        if found is not None:
            _fail(f"{label}.{key}", redact_text(str(found), [value]))


def _blocks_backend(data: dict[str, Any]) -> str | None:
    """The built-in backend the ``sql:``/``redis:`` blocks are judged against, or None.

    The backend given (by its canonical name), else the one a single URL selects (as a
    flat field or in a block), else ``memory``. None for a plugin backend (it may read
    any field), a ``backend`` that is no string, and two URLs (refused later, naming both).
    """
    if "backend" in data:
        backend = data["backend"]
        if not isinstance(backend, str) or backend not in BUILTIN_BACKENDS:
            return None
        return canonical_name(backend)
    selected = {_URL_BACKEND[name] for name in _URL_BACKEND if data.get(name) not in (None, "")}
    for block in BACKEND_BLOCKS:
        options = data.get(block)
        if isinstance(options, dict) and options.get("url") not in (None, ""):
            selected.add(block)
    if len(selected) > 1:
        return None
    return selected.pop() if selected else "memory"


def _check_block_owner(data: dict[str, Any], block: str, options: Any, judged: str | None) -> None:
    """Refuse a non-empty ``block`` when the chosen built-in backend ``judged`` is another."""
    if judged is None or judged == block or options == {}:
        return
    shown = data.get("backend", judged)
    _fail(
        block,
        f"backend {shown!r} does not use the {block} block (set backend to {block!r}, "
        "or remove the block)",
    )


def _move_block(
    data: dict[str, Any], block: str, label: str, options: Any, *, urls: bool
) -> None:
    """Move the keys of ``block`` (written as ``label``) to their flat fields in ``data``."""
    keys = BACKEND_BLOCKS[block]
    if not isinstance(options, dict):
        _fail(label, f"must be a mapping of {sorted(keys)}, got {type(options).__name__}")
    for key, value in options.items():
        shown = f"{label}.{key}"
        flat = keys.get(key)
        if flat is None:
            near = difflib.get_close_matches(str(key), list(keys), n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            _fail(shown, f"unknown option{hint}; expected one of {sorted(keys)}")
            continue
        checked = _block_value(shown, flat, value, urls=urls)
        if flat in data and data[flat] not in (value, checked):
            _fail_fields(
                (shown, flat),
                "both are set, to different values; keep one (an environment variable "
                f"overrides YAML written the same way: {_env_name(shown)} for {shown}, "
                f"{_env_name(flat)} for {flat})",
            )
        data[flat] = checked


def _env_name(name: str) -> str:
    """The environment variable of the ``ai_session`` key ``name`` (``sql.url``)."""
    return "LEX_AI_SESSION__" + name.upper().replace(".", "__")


def _block_value(name: str, flat: str, value: Any, *, urls: bool) -> Any:
    """A block option's value checked under the name the user wrote (``sql.url``).

    Only the checks that need no other field run here (a URL's own form when
    ``urls``, a pool size, a prefix, a flag); a rule across fields (Redis Cluster
    and the db number) runs later on the flat fields, which it names.
    """
    if flat in _INT_FIELDS:
        return _as_int(name, value, _INT_FIELDS[flat])
    if flat in _BOOL_FIELDS:
        return _as_bool(name, value)
    if flat == "table_prefix":
        return _table_prefix(name, value)
    value = _non_empty(name, value)
    if urls and flat == "database_url":
        problem = database_url_problem(value)
        if problem is not None:
            _fail(name, problem)
    elif urls and flat == "redis_url":
        found = redis_url_problem(value, cluster=False)  # the cluster's rule comes later
        if found is not None:
            _fail(name, found[1])
    return value


#: An HTTP token (RFC 9110 5.6.2): a cookie or header name.
_TOKEN_MARKS = "!#$%&'*+-.^_`|~"
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A cookie's Path attribute value (RFC 6265 4.1.1: any CHAR but controls and ';').
_COOKIE_PATH = re.compile(r"[\x20-\x3a\x3c-\x7e]+")
#: A cookie's Domain attribute value: a host name, an optional leading dot.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_COOKIE_DOMAIN = re.compile(rf"\.?{_LABEL}(?:\.{_LABEL})*\.?")


def _non_empty(name: str, value: Any) -> str:
    """``value`` if it is a non-empty string; else refused naming ``name``."""
    if not isinstance(value, str) or not value.strip():
        _fail(name, f"must be a non-empty string, got {value!r}")
    return str(value)


def _table_prefix(name: str, value: Any) -> str:
    """``value`` if it is letters, digits and ``_`` (a SQL table prefix); else refused.

    Upper-case letters are accepted as written (tables created with them stay
    reachable): the database decides whether prefixes differing only in case name the
    same tables (PostgreSQL and SQLite: yes; MariaDB on Linux: no). See
    docs/backend-sql.md.
    """
    if not table_prefix_ok(value):
        _fail(name, f"{TABLE_PREFIX_RULE}, got {value!r}")
    return str(value)


def _secret_key(key: str) -> bool:
    """Whether an option's name says it holds a secret (its value is masked when shown)."""
    low = key.lower()
    words = ("password", "secret", "token", "credential")
    return any(word in low for word in words) or low == "key" or low.endswith("_key")


def _field_default(cls: Any, name: str) -> Any:
    return next(f.default for f in fields(cls) if f.name == name)


def _cookie_secrets(value: Any) -> str | list[str] | None:
    """``cookie_secret`` checked: None, one string, or a non-empty list of strings (newest first).

    From an environment variable, a list comes as a JSON array in one variable
    (``LEX_AI_SESSION__COOKIE_SECRET='["new", "old"]'``) or as numbered variables
    (``..._COOKIE_SECRET__0``, ``__1``: read as a mapping of ``"0"``, ``"1"``). A secret
    is never echoed in the message.
    """
    if isinstance(value, str):
        listed = _json_list(value)
        if listed is None:
            _refuse_env_non_list(value)
            return value
        value = listed
    numbered: list[str] | None = None  # the suffixes of numbered variables, in order
    if isinstance(value, Mapping) and value:
        _refuse_bad_suffixes(value)
    if isinstance(value, Mapping) and value and all(_is_number(k) for k in value):
        numbers = sorted(int(k) for k in value)
        if numbers != list(range(len(numbers))):
            _fail("cookie_secret", f"numbered secrets must run 0, 1, 2, ...; got {numbers}")
        # A numbered variable saying ``null`` is YAML's ``[null]``: refused below, by index
        # (it became the signing secret "null").
        numbered = sorted(value, key=int)
        value = [_null_word(value[k]) for k in numbered]
    if value is None:
        return value
    if isinstance(value, list | tuple):
        if not value:
            _fail("cookie_secret", "must be a string or a non-empty list of strings")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                hint = ""
                if numbered is not None and isinstance(item, int | float):
                    hint = (f" ({_SECRET_ENV}__{numbered[index]}: a variable of digits only is "
                            "read as a number: use letters too)")
                _fail(f"cookie_secret[{index}]", f"must be a non-empty string, got "
                      f"{_a(type(item).__name__)}{hint}")
        return [str(item) for item in value]
    _fail(
        "cookie_secret",
        f"must be a string or a list of strings, got {_a(type(value).__name__)} (an environment "
        "variable of digits only is read as a number: use letters too)",
    )
    return None


_ENV_PREFIX = "LEX_AI_SESSION__"
_SECRET_ENV = _ENV_PREFIX + "COOKIE_SECRET"


def _a(kind: str) -> str:
    """``kind`` with its indefinite article (``an int``, ``a dict``)."""
    return f"{'an' if kind[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {kind}"


def _is_number(key: Any) -> bool:
    """Whether ``key`` is the suffix of a numbered variable: ASCII digits only."""
    return isinstance(key, str) and key.isascii() and key.isdigit()


def _refuse_env_non_list(value: str) -> None:
    """Refuse ``LEX_AI_SESSION__COOKIE_SECRET`` starting with ``[`` that is no JSON list.

    ``['new', 'old']``, a trailing comma or a missing ``]`` became one literal secret
    (every cookie signed with the old one stopped verifying, without an error). A
    literal secret starting with ``[`` cannot be given in the variable.
    """
    raw = os.environ.get(_SECRET_ENV)
    stripped = value.strip()
    if raw is None or raw.strip() != stripped or not stripped.startswith("["):
        return
    _fail(
        "cookie_secret",
        f"{_SECRET_ENV} starts with '[' but is not a JSON array of strings; give the "
        'list as one, e.g. ["new", "old"] (double quotes, no trailing comma)',
    )


def _refuse_bad_suffixes(value: Mapping[Any, Any]) -> None:
    """Refuse numbered variables whose suffix is not a number, naming them."""
    bad = {str(k).lower() for k in value if not _is_number(k)}
    prefix = _SECRET_ENV + "__"
    names = sorted(
        name for name in os.environ
        if name.startswith(prefix) and name[len(prefix):].lower() in bad
    )
    if names:
        _fail("cookie_secret", f"{', '.join(names)}: the suffix must be a number 0, 1, ...")


def _refuse_env_conflicts(environ: Mapping[str, str]) -> None:
    """Refuse a variable that sets a field beside another that sets a part of it."""
    names = sorted(k for k in environ if k.startswith(_ENV_PREFIX))
    for whole in names:
        parts = [k for k in names if k.startswith(whole + "__")]
        if parts:
            field = whole[len(_ENV_PREFIX):].lower()
            _fail(
                field,
                f"{whole} and {parts[0]} are both set; give the value one way only "
                f"(for a list: a JSON array in {whole}, or numbered variables alone)",
            )


def _env_nulls(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``None`` for a field that may be ``null`` whose environment variable
    says ``null`` (YAML's word for it): ``LEX_AI_SESSION__COOKIE_NAME=null`` disables
    cookies as ``cookie_name: null`` does, instead of naming the cookie "null"."""
    # ``options`` takes YAML's null too (no options): the same block as ``sql``/``redis``.
    nullable = {f.name for f in fields(SessionConfig) if "None" in str(f.type)} | {"options"}
    for name in nullable & set(data):
        if _is_null_word(data[name]) and _is_null_word(os.environ.get(_ENV_PREFIX + name.upper())):
            data[name] = None
    return data


def _is_null_word(value: Any) -> bool:
    """Whether ``value`` is the word ``null`` (any case, spaces around)."""
    return isinstance(value, str) and value.strip().lower() == "null"


def _null_word(value: Any) -> Any:
    """None for the word ``null``, else ``value``."""
    return None if _is_null_word(value) else value


def _env_text(name: str, value: Any) -> Any:
    """A text field the framework's environment source turned into a number
    (``LEX_AI_SESSION__KEY_PREFIX=2024`` arrives as ``2024``): the variable's own text,
    when the variable is set and reads as that number; anything else as given."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    raw = os.environ.get(_ENV_PREFIX + name.upper())
    if raw is None:
        return value
    try:
        same = str(type(value)(raw.strip())) == str(value)  # str: nan is not == nan
    except ValueError:
        same = False
    return raw if same else value


def _json_list(text: str) -> list[Any] | None:
    """``text`` parsed when it is a JSON array (a list given in one env variable), else None."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    try:
        parsed = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, list) else None


def _fail(name: str, problem: str) -> Any:
    raise ConfigurationError(f"ai_session.{name}: {problem}")


def _fail_fields(names: tuple[str, ...], problem: str) -> Any:
    raise ConfigurationError(" / ".join(f"ai_session.{n}" for n in names) + f": {problem}")


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
        _fail(name, f"must be >= {minimum}, got {_shown_int(value)}")
    maximum = _MAX_INT.get(name.rsplit(".", 1)[-1])
    if maximum is not None and value > maximum:
        _fail(name, f"must be <= {maximum} (a thousand years), got {_shown_int(value)}")
    if value > _MAX_COUNT:
        _fail(name, f"must be in {minimum}..{_MAX_COUNT} (2**53 - 1), got {_shown_int(value)}")
    return int(value)


def _shown_int(value: int) -> str:
    """``value`` as shown in a message: in full up to 40 digits, else its size."""
    text = str(value)
    return text if len(text) <= 40 else f"an integer of {len(text)} digits"
