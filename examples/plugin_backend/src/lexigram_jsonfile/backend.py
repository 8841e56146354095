"""The ``jsonfile`` backend object the entry point names."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from lexigram_jsonfile.store import JsonFileSessionStore

__all__ = ["BACKEND", "JsonFileBackend", "as_flag"]

_SCHEME = "jsonfile"
#: The options of ``ai_session.options`` this backend reads.
_OPTIONS = frozenset({"keep_backup"})
#: How a flag may be written: YAML gives a bool, an environment variable a string
#: (``LEX_AI_SESSION__OPTIONS__KEEP_BACKUP=true``) or, for ``1``/``0``, a number.
_FLAGS: dict[str, bool] = {"true": True, "false": False, "1": True, "0": False}


def as_flag(value: Any) -> bool | None:
    """``value`` as a bool (``True``, ``"true"``, ``"1"``, ``1``...), or None if it is none."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _FLAGS.get(value.strip().lower())
    return None


class JsonFileBackend:
    """``jsonfile``: sessions in a JSON file named by ``database_url``."""

    name = "jsonfile"
    url_field: str | None = "database_url"
    persistent = True

    def url_problem(self, url: str) -> str | None:
        """``jsonfile:///path/to/file.json`` (or ``jsonfile:relative/path.json``) or nothing."""
        parts = urlsplit(url)
        if parts.scheme != _SCHEME:
            return f"expected {_SCHEME}:///<path to a .json file>, got scheme {parts.scheme!r}"
        if parts.netloc:  # jsonfile://data/s.json would be the file /s.json on host "data"
            return (
                f"a file has no host, got {parts.netloc!r}: write {_SCHEME}:///<absolute path>"
                f" (three slashes) or {_SCHEME}:<relative path>"
            )
        if not parts.path or parts.path.endswith("/"):
            return f"no file in {url!r}"
        return None

    def options_problem(self, options: dict[str, Any]) -> tuple[str, str] | None:
        """The first bad entry of ``ai_session.options`` as (key, problem), or None."""
        for key in sorted(set(options) - _OPTIONS):
            return key, f"unknown option; expected one of {sorted(_OPTIONS)}"
        if as_flag(options.get("keep_backup", False)) is None:
            return "keep_backup", f"must be true or false, got {options['keep_backup']!r}"
        return None

    def from_config(self, config: Any) -> JsonFileSessionStore:
        """A store on the file of ``config.database_url`` with ``config.options``."""
        options = getattr(config, "options", None) or {}
        return JsonFileSessionStore(
            urlsplit(config.database_url).path,
            session_ttl=config.session_ttl,
            keep_backup=bool(as_flag(options.get("keep_backup", False))),
        )

    async def setup(self, config: Any) -> str:
        """Create the file's directory."""
        store = self.from_config(config)
        store.path.parent.mkdir(parents=True, exist_ok=True)
        return f"JSON file {store.path} ready"


BACKEND = JsonFileBackend()
