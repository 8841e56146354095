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
        loader.add_source(FileConfigSource(base))
    profile = os.environ.get("LEX_PROFILE")
    if profile and (overlay := base.parent / f"application.{profile}.yaml").exists():
        loader.add_source(FileConfigSource(overlay))
    loader.add_source(EnvironmentConfigSource("LEX_"))
    section = loader._collect_sync(None).get(SessionConfig.config_section) or {}
    if not isinstance(section, dict):
        raise ConfigurationError(f"ai_session: must be a mapping, got {type(section).__name__}")
    return dict(section)


def with_flags(section: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """``section`` with the CLI's ``flags`` (flat field -> value) applied, flags winning.

    A flag replaces the same setting in a block (``--database-url`` over ``sql.url``);
    when the flags choose another backend than the one written, that backend's
    ``options`` and the blocks of other built-in backends are left out (they configure
    a backend the command does not use).
    """
    data = dict(section)
    written = data.get("backend")
    chosen = flags.get("backend", written)
    if not isinstance(chosen, str):
        return {**data, **flags}
    name = canonical_name(chosen)
    if isinstance(written, str) and canonical_name(written) != name:
        data.pop("options", None)
    for block, keys in BACKEND_BLOCKS.items():
        if block != name and block in data and _other_builtin(name):
            data.pop(block)
            continue
        for label in (block, "options") if block == name else (block,):
            options = data.get(label)
            if isinstance(options, dict):
                data[label] = {k: v for k, v in options.items() if keys.get(k) not in flags}
    return {**data, **flags}


def _other_builtin(name: str) -> bool:
    """Whether blocks of other built-in backends are out of place with backend ``name``."""
    return name in BACKEND_BLOCKS or name == "memory"
