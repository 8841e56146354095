"""Adapters that put lexigram sessions behind other frameworks' session interfaces.

Each adapter lives in its own sub-package and needs its own optional extra; importing
this package imports none of them (nor any third-party SDK).

* :mod:`lexigram.ai.session.integrations.openai_agents`: the OpenAI Agents SDK
  ``Session`` protocol (extra ``openai-agents``).
"""

__all__: list[str] = []
