"""An example storage backend for lexigram-ai-session, installed as a plugin.

``ai_session.backend: jsonfile`` with ``database_url: jsonfile:///path/sessions.json``
keeps sessions in memory while the application runs and in a JSON file between runs.
"""

from lexigram_jsonfile.backend import BACKEND, JsonFileBackend
from lexigram_jsonfile.store import JsonFileSessionStore

__all__ = ["BACKEND", "JsonFileBackend", "JsonFileSessionStore"]
