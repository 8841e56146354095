"""Credentials out of messages: redact the secrets of connection URLs.

Every configuration error, log line and CLI message that shows a ``database_url``
or ``redis_url`` shows it through :func:`redact_url`: the password becomes ``***``,
and so does a user name that looks like a token (``redis://<token>@host``), a
``password=``/``token=``/``ssl_password=`` query parameter (its name also when
percent-encoded: ``pass%77ord=``), and the ``password=`` (``pwd=``,
``passwd=``, quoted ``password='a b'``, any case) of a libpq-style key=value
connection string (``host=db user=app password=...``). It works on URLs that do
not parse, so a malformed URL is redacted too. :func:`url_secrets` also gives the
percent-decoded form of an encoded secret, which a driver's message may quote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TextIO
from urllib.parse import unquote, unquote_plus, urlsplit

__all__ = ["MASK", "RedactingWriter", "redact_text", "redact_url", "url_secrets"]

MASK = "***"

#: ``scheme://userinfo@`` at the start of a URL (userinfo up to the last ``@``
#: before the path, so a password holding ``@`` or ``/`` is covered as a whole).
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^?#]*)@")
#: The same without a scheme (``bob:pw@host/db``, or a mistyped scheme).
_BARE_USERINFO = re.compile(r"^(?P<scheme>)(?P<userinfo>[^?#]*)@")
#: When neither matches because the password itself holds ``?``, ``#`` or white space
#: (``redis://:Pa ss#Zq9?rd@host``): user-info up to the last ``@`` of the text.
_LOOSE_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>.*)@")
#: Where a driver splitting a malformed URL may cut a password: its pieces are secrets.
_PIECES = re.compile(r"[@:/?#]")
#: A quoted value in a message (``as 'Ab1'``).
_QUOTED = re.compile(r"""(['"])([^'"\n]{2,200})\1""")
#: Last resort for text that is no URL at all: a ``:secret@`` anywhere.
_LOOSE_PASSWORD = re.compile(r":(?P<secret>[^:@/\s]+)@")
_SECRET_KEYS = (
    r"(?:password|passwd|pass|pwd|secret|token|access_token|auth|api_key|apikey"
    r"|sslpassword|ssl_password|ssl_key_password|sslkeypassword|tls_password"
    r"|key_password|client_secret)"
)
#: A secret query parameter as written: the name may be percent-encoded
#: (``pass%77ord=``, which every URL parser reads as ``password``), so the name is
#: matched after decoding (:func:`_secret_param_name`), not by this pattern alone.
_QUERY_PARAM = re.compile(r"(?P<key>[?&;](?P<name>[^=&;?#]*)=)(?P<value>[^&]*)")
_SECRET_NAME = re.compile(rf"{_SECRET_KEYS}", re.IGNORECASE)
#: ``password=...`` of a key=value connection string (libpq, ODBC): the key at the
#: start or after white space, blanks allowed around ``=``; the value single-quoted
#: (backslash escapes, perhaps unterminated) or up to the next white space.
_KV_SECRET = re.compile(
    rf"(?P<key>(?:^|(?<=[\s;])){_SECRET_KEYS}\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*(?:'|\\?$)"  # libpq: single-quoted
    r'|"(?:[^"\\]|\\.)*(?:"|\\?$)'  # double-quoted
    r"|\{(?:[^}]|\}\})*(?:\}|$)"  # ODBC: braced (may hold ';'; '}}' is a '}')
    r"|[^\s'\"{]\S*)",
    re.IGNORECASE,
)
_KV_ESCAPE = re.compile(r"\\(.)")
#: A user name given without a password is treated as a token when it is this long,
#: or this long with both letters and digits.
_TOKEN_LENGTH = 16
_MIXED_TOKEN_LENGTH = 8
#: Shorter secrets are redacted inside URLs only: replacing them anywhere in a
#: message would garble it.
_MIN_FREE_TEXT_SECRET = 4


def _token_like(user: str) -> bool:
    """A long user name, or a mixed letters-and-digits one, given without a password."""
    mixed = any(c.isdigit() for c in user) and any(c.isalpha() for c in user)
    return len(user) >= _TOKEN_LENGTH or (mixed and len(user) >= _MIXED_TOKEN_LENGTH)


def _split_userinfo(url: str) -> tuple[str, str, str | None, str] | None:
    """``(scheme, user, password, rest)`` of ``url``, or None without user-info."""
    match = _USERINFO.match(url) or _BARE_USERINFO.match(url)
    loose = _LOOSE_USERINFO.match(url)
    # A password holding '#', '?' (or a later '@'): a parser stops at the first of
    # them, so the user-info runs to the last '@' of the text; unless the URL has none
    # (an '@' in its query only: ``redis://h:6390/0?client_name=ops@team``).
    if (
        loose is not None
        and (match is None or loose.end() > match.end())
        and (match is not None or _parsed_netloc_has_at(url))
    ):
        match = loose
    if match is None:
        return None
    userinfo = match.group("userinfo")
    if "/" in userinfo.split(":", 1)[0]:
        return None  # an '@' in the path or query, not user-info
    user, sep, password = userinfo.partition(":")
    return match.group("scheme"), user, (password if sep else None), url[match.end() :]


def _parsed_netloc_has_at(url: str) -> bool:
    """Whether ``urlsplit`` finds user-info in ``url`` (True when it cannot parse it)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return True
    return "@" in parts.netloc


def _secret_param_name(name: str) -> bool:
    """Whether a query parameter's name (as written, perhaps percent-encoded) is a secret's."""
    return any(
        _SECRET_NAME.fullmatch(form.strip()) is not None
        for form in {name, unquote(name), unquote_plus(name)}
    )


def _redact_params(text: str) -> str:
    """``text`` with the values of its secret query parameters replaced."""
    return _QUERY_PARAM.sub(
        lambda m: m.group("key") + MASK if _secret_param_name(m.group("name")) else m.group(0),
        text,
    )


def _param_secrets(text: str) -> list[str]:
    """The values of ``text``'s secret query parameters."""
    return [
        m.group("value") for m in _QUERY_PARAM.finditer(text) if _secret_param_name(m.group("name"))
    ]


def _redact_key_values(text: str) -> str:
    """``text`` with the secret values of its key=value settings replaced."""
    return _KV_SECRET.sub(lambda m: m.group("key") + MASK, text)


def _key_value_secrets(text: str) -> list[str]:
    """The secret values of ``text``'s key=value settings, as written and unquoted."""
    found: list[str] = []
    for match in _KV_SECRET.finditer(text):
        value = match.group("value")
        if value[:1] in ("'", '"', "{"):
            close = "}" if value[0] == "{" else value[0]
            value = value[1:-1] if len(value) > 1 and value.endswith(close) else value[1:]
            found += [value, _KV_ESCAPE.sub(r"\1", value), value.replace("}}", "}")]
        else:
            found += [value, value.split(";", 1)[0]]  # ODBC: Pwd=x;Server=y
    return found


def _pieces(secret: str, shown: str) -> list[str]:
    """What of ``secret`` a driver that splits its URL at ``@ : / ? #`` may quote (as a
    port, a host, a fragment): every run of pieces starting or ending at a delimiter.
    Runs the redacted URL shows anyway (``localhost`` in ``:admin:localhost@localhost``)
    are left out: masking them would garble every message and hide nothing."""
    cuts = [m.start() for m in _PIECES.finditer(secret)]
    runs = {secret[:c] for c in cuts} | {secret[c + 1 :] for c in cuts}
    runs |= set(_PIECES.split(secret))
    return sorted(r.strip() for r in runs if r.strip() and r.strip() not in shown)


def redact_url(url: object) -> str:
    """``url`` with its credentials replaced by ``***`` (never raises)."""
    text = _redact_key_values(url if isinstance(url, str) else str(url))
    parts = _split_userinfo(text)
    if parts is not None:
        scheme, user, password, rest = parts
        if password:
            text = f"{scheme}{user}:{MASK}@{rest}"
        elif user and _token_like(user):
            text = f"{scheme}{MASK}{':' if password is not None else ''}@{rest}"
    else:
        text = _LOOSE_PASSWORD.sub(f":{MASK}@", text)
    return _redact_params(text)


def url_secrets(url: object) -> list[str]:
    """The secret substrings of ``url`` (password, token-like user, secret parameters,
    key=value passwords), each also percent-decoded when that differs."""
    if not isinstance(url, str):
        return []
    found = _key_value_secrets(url)
    text = _redact_key_values(url)  # what is left is judged as a URL
    parts = _split_userinfo(text)
    if parts is not None:
        _, user, password, _ = parts
        if password:
            found.append(password)
            found += _pieces(password, redact_url(url))
        elif user and _token_like(user):
            found.append(user)
            found += _pieces(user, redact_url(url))
    else:
        found += [m.group("secret") for m in _LOOSE_PASSWORD.finditer(text)]
    found += _param_secrets(text)
    decoded = [unquote(s) for s in found] + [unquote_plus(s) for s in found]
    unique: list[str] = []
    for secret in found + decoded:
        if secret and secret != MASK and secret not in unique:
            unique.append(secret)
    return unique


def redact_text(text: str, urls: Iterable[object]) -> str:
    """``text`` with every one of ``urls`` and each of their secrets redacted.

    For messages built from another library's error, which may quote the URL.
    """
    found: list[str] = []
    for url in urls:
        if isinstance(url, str) and url:
            text = text.replace(url, redact_url(url))
            found += url_secrets(url)
    found += [repr(s)[1:-1] for s in found]  # as quoted by a message's {value!r}
    for secret in sorted(set(found), key=len, reverse=True):  # longest first
        if len(secret) >= _MIN_FREE_TEXT_SECRET:
            # any case: a parser lower-cases what it takes for a host
            text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    # A quoted value that is a piece of a secret, however short ('Ab1' as a port).
    secrets = [s for s in found if s]
    return _QUOTED.sub(
        lambda m: m.group(0)
        if m.group(2) == MASK or not any(m.group(2) in s for s in secrets)
        else m.group(1) + MASK + m.group(1),
        text,
    )


class RedactingWriter:
    """A text stream that redacts the secrets of ``urls`` from everything written."""

    def __init__(self, stream: TextIO, urls: Iterable[object]) -> None:
        self._stream = stream
        self._urls: list[str] = []
        self.add_urls(urls)

    def add_urls(self, urls: Iterable[object]) -> None:
        """Also redact the secrets of ``urls`` (e.g. once the config is known)."""
        self._urls += [u for u in urls if isinstance(u, str) and u and u not in self._urls]

    def write(self, text: str) -> int:
        """Write ``text`` with the secrets redacted."""
        return self._stream.write(redact_text(text, self._urls))

    def flush(self) -> None:
        """Flush the underlying stream."""
        self._stream.flush()

    def isatty(self) -> bool:
        """Whether the underlying stream is a terminal."""
        return self._stream.isatty()
