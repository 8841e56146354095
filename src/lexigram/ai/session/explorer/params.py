"""Reading a request's parameters: query values checked, form bodies bounded, origin."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.validation import MAX_SAFE_INT, check_id

__all__ = [
    "MAX_FORM_BYTES",
    "int_param",
    "paging",
    "read_form",
    "required",
    "same_origin",
    "session_id",
    "text_param",
    "user_param",
]

MAX_FORM_BYTES = 16 * 1024


def int_param(
    request: Request, name: str, *, low: int, high: int, default: int | None
) -> int | None:
    """The integer query parameter ``name`` in ``low..high`` (``default`` when absent)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SessionValidationError(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SessionValidationError(name, f"must be in {low}..{high}, got {value}")
    return value


def paging(request: Request) -> tuple[int | None, int]:
    """``after`` (a turn ``seq``) and ``pos`` (the position of the first turn shown)."""
    # The stores' bound on a seq: a larger ``after`` was refused by the store as ``after_seq``.
    after = int_param(request, "after", low=0, high=MAX_SAFE_INT, default=None)
    position = int_param(request, "pos", low=1, high=MAX_SAFE_INT, default=1)
    return after, position or 1


def text_param(request: Request, name: str) -> str:
    """The query parameter ``name`` as given ("" when absent or only blanks).

    Not stripped: ``" bob"`` and ``"bob"`` are two users (ids are taken as given).
    """
    value = request.query_params.get(name, "")
    return "" if value.isspace() else value


def user_param(request: Request) -> str:
    """The ``user`` query parameter ("" when absent), checked as an id naming ``user``."""
    value = text_param(request, "user")
    return check_id(value, "user") if value else value


def required(value: str, name: str) -> str:
    """``value`` unless it is empty (then ``SessionValidationError`` naming ``name``)."""
    if not value:
        raise SessionValidationError(name, "is required")
    return value


def session_id(request: Request) -> str:
    """The ``id`` query parameter (required, checked as an id; ids are taken as given)."""
    return check_id(required(request.query_params.get("id", ""), "id"), "id")


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (at most :data:`MAX_FORM_BYTES`)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise SessionValidationError("form", f"is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SessionValidationError("form", "is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))
