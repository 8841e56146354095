"""The Python code blocks of README.md, as a reader copies them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)


def code_blocks(language: str = "python", text: str | None = None) -> list[str]:
    """Every fenced block of ``language`` in the README, in order."""
    source = README.read_text(encoding="utf-8") if text is None else text
    return [body for lang, body in _FENCE.findall(source) if lang == language]


def section_block(heading: str, language: str = "python") -> str:
    """The first ``language`` block under the ``## heading`` section."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    blocks = code_blocks(language, text[start : end if end != -1 else len(text)])
    if not blocks:
        raise LookupError(f"no {language} block under '## {heading}'")
    return blocks[0]
