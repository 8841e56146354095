"""The ``jsonfile`` backend object the entry point names."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from lexigram_jsonfile.store import JsonFileSessionStore

__all__ = ["BACKEND", "JsonFileBackend"]

_SCHEME = "jsonfile"


class JsonFileBackend:
    """``jsonfile``: sessions in a JSON file named by ``database_url``."""

    name = "jsonfile"
    url_field: str | None = "database_url"
    persistent = True

    def url_problem(self, url: str) -> str | None:
        """``jsonfile:///path/to/file.json`` or nothing."""
        parts = urlsplit(url)
        if parts.scheme != _SCHEME:
            return f"expected {_SCHEME}:///<path to a .json file>, got scheme {parts.scheme!r}"
        if not parts.path or parts.path.endswith("/"):
            return f"no file in {url!r}"
        return None

    def from_config(self, config: Any) -> JsonFileSessionStore:
        """A store on the file of ``config.database_url``."""
        return JsonFileSessionStore(
            urlsplit(config.database_url).path, session_ttl=config.session_ttl
        )

    async def setup(self, config: Any) -> str:
        """Create the file's directory."""
        store = self.from_config(config)
        store.path.parent.mkdir(parents=True, exist_ok=True)
        return f"JSON file {store.path} ready"


BACKEND = JsonFileBackend()
