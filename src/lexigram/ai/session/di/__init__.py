"""Dependency-injection wiring."""

from lexigram.ai.session.di.provider import SessionProvider

__all__ = ["SessionProvider"]
