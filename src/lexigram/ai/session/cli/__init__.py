"""Command-line tools: ``python -m lexigram.ai.session.cli`` and the ``lexigram`` CLI group.

Commands: ``schema-setup``, ``list USER``, ``show SESSION``, ``export``, ``import``,
``sweep``. :class:`~lexigram.ai.session.cli.contributor.AiSessionCliContributor` is
the ``lexigram.cli.contributors`` entry point.
"""

from __future__ import annotations

__all__: list[str] = []
