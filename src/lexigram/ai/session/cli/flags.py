"""The CLI's configuration: ``application.yaml``, its profile and ``LEX_*``, then the flags.

The flags (``--backend``, ``--database-url``, ...) are applied to the configuration as
written, before it is validated, so that settings meant for the backend the flags
choose (``LEX_AI_SESSION__OPTIONS__...``, an ``sql:`` block) are judged with it, and
a flag wins over the same setting written in a block.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.backends import canonical_name
from lexigram.ai.session.config import BACKEND_BLOCKS, SessionConfig

__all__ = ["configured_section", "with_flags"]


def configured_section(base_path: Path | None = None) -> dict[str, Any]:
    """The ``ai_session`` settings as ``SessionConfig.from_env_profile()`` reads them, unvalidated.

    The same sources in the same order: ``application.yaml``, then
    ``application.<LEX_PROFILE>.yaml``, then ``LEX_*`` environment variables.
    """
    from lexigram.config.lib import ConfigLoader, EnvironmentConfigSource, FileConfigSource

    loader = ConfigLoader()
    base = (base_path or Path.cwd()) / "application.yaml"
    if base.exists():
        _check_yaml(base)
        loader.add_source(FileConfigSource(base))
    profile = os.environ.get("LEX_PROFILE")
    if profile and (overlay := base.parent / f"application.{profile}.yaml").exists():
        _check_yaml(overlay)
        loader.add_source(FileConfigSource(overlay))
    loader.add_source(EnvironmentConfigSource("LEX_"))
    section = loader._collect_sync(None).get(SessionConfig.config_section) or {}
    if not isinstance(section, dict):
        raise ConfigurationError(f"ai_session: must be a mapping, got {type(section).__name__}")
    return dict(section)


def _check_yaml(path: Path) -> None:
    """Refuse a file that is not valid YAML, naming it and the place (the loader's own
    error was a traceback naming ``"<unicode string>"``)."""
    import json

    import yaml  # type: ignore[import-untyped]

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot be read: {exc}") from None
    try:
        # The framework's loader takes a JSON object first (tabs and all), else YAML.
        if isinstance(json.loads(text), dict):
            return
    except ValueError:
        pass
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigurationError(f"{path}: not valid YAML{where}: {problem}") from None


def with_flags(section: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """``section`` with the CLI's ``flags`` (flat field -> value) applied, flags winning.

    A flag replaces the same setting in a block (``--database-url`` over ``sql.url``).
    When the flags choose another backend than the one the settings configure (written
    as ``backend``, or selected by their one URL), that backend's ``options`` and block
    are left out: they configure a backend the command does not use. Anything else is
    judged as the application judges it (a stray block is refused, naming it).
    """
    data = dict(section)
    written = data.get("backend")
    chosen = flags.get("backend")
    own = _configured_backend(data)
    if isinstance(chosen, str) and own is not None and own != canonical_name(chosen):
        if isinstance(written, str):
            data.pop("options", None)
        data.pop(own, None)
    final = chosen if isinstance(chosen, str) else written
    name = canonical_name(final) if isinstance(final, str) else None
    for block, keys in BACKEND_BLOCKS.items():
        for label in (block, "options") if block == name else (block,):
            options = data.get(label)
            if isinstance(options, dict):
                data[label] = {k: v for k, v in options.items() if keys.get(k) not in flags}
    return {**data, **flags}


def _configured_backend(data: dict[str, Any]) -> str | None:
    """The backend the settings configure: ``backend`` (canonical name), else the one
    built-in backend their URLs select (a flat URL field or a block's ``url``), else None."""
    written = data.get("backend")
    if isinstance(written, str):
        return canonical_name(written)
    found = set()
    for block, keys in BACKEND_BLOCKS.items():
        options = data.get(block)
        if data.get(keys["url"]) not in (None, "") or (
            isinstance(options, dict) and options.get("url") not in (None, "")
        ):
            found.add(block)
    return found.pop() if len(found) == 1 else None
