"""Settings that go into HTTP headers as written are refused unless they are safe there.

``cookie_path: "/; Domain=evil.example"`` wrote a Domain attribute of its own into
``Set-Cookie``; ``cookie_name: "a;b"`` a malformed cookie; a ``cookie_name`` outside
Latin-1 failed every response after the session had been created; a lone surrogate in
``default_system_prompt`` made every ``create()`` fail (found by an outside audit).
"""

from __future__ import annotations

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import SessionConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cookie_name", "a;b"),
        ("cookie_name", "sess id"),
        ("cookie_name", "x=y; Domain=evil.example"),
        ("cookie_name", "\u4f1a"),
        ("cookie_name", "\ud800"),
        ("header_name", "X Bad\n"),
        ("header_name", "X-Session:ID"),
        ("cookie_path", "/; Domain=evil.example"),
        ("cookie_path", "/chat\r\nSet-Cookie: a=b"),
        ("cookie_path", "/caf\u00e9"),
        ("cookie_domain", "a b;c"),
        ("cookie_domain", "example.test; Secure"),
        ("default_system_prompt", "be brief \ud800"),
    ],
)
def test_an_unsafe_header_value_is_refused_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"ai_session.{field}:"):
        SessionConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cookie_name", "lexigram_session"),
        ("cookie_name", "__Host-chat.sid"),
        ("header_name", "X-Session-ID"),
        ("cookie_path", "/chat/v1"),
        ("cookie_domain", "example.test"),
        ("cookie_domain", ".chat.example.test"),
        ("cookie_domain", "localhost"),
        ("cookie_domain", "example.com."),
        ("cookie_domain", "my_host.internal"),
        ("default_system_prompt", "Réponds en français 😀"),
    ],
)
def test_ordinary_values_pass(field: str, value: str) -> None:
    assert getattr(SessionConfig(**{field: value}), field) == value


def test_an_empty_cookie_domain_is_host_only() -> None:
    """As ``cookie_name: ""`` turns cookies off: ``LEX_AI_SESSION__COOKIE_DOMAIN=`` is null."""
    assert SessionConfig(cookie_domain="").cookie_domain is None
