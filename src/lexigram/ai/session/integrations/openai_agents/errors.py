"""The adapter's error for input of the wrong type (the SDK raises ``TypeError`` there)."""

from __future__ import annotations

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = ["SessionTypeError"]


class SessionTypeError(SessionValidationError, TypeError):
    """Input of the wrong type: a :class:`SessionValidationError` that is also a ``TypeError``.

    Raised where the SDK's own sessions raise ``TypeError``: an unknown key in
    ``session_settings`` (``"Unknown session settings: limitt"``), settings that are
    neither ``SessionSettings`` nor a dict, and an item that cannot be stored as JSON.
    Same code as every validation error (``LEX_ERR_SES_107``); ``field`` names the input.
    """
