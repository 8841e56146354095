"""Decoding sealed values: ``pybase64`` when installed, ``binascii`` otherwise, alike."""

from __future__ import annotations

import binascii
import copy
import sys
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.encryption import cipher
from lexigram.ai.session.encryption.cipher import SEALED_PREFIX, new_data_key, sealed_bytes
from lexigram.ai.session.stores.encrypted import sealing
from lexigram.ai.session.testing import make_turn

from .helpers import keyring

_BINASCII = partial(binascii.a2b_base64, strict_mode=True)


def _fallback(monkeypatch: pytest.MonkeyPatch) -> cipher.StrictB64Decode:
    """The decoder the module picks when ``pybase64`` is not installed."""
    monkeypatch.setitem(sys.modules, "pybase64", None)  # its import raises ImportError
    return cipher._standard_b64decode()


def test_the_crypto_extra_brings_the_fast_decoder() -> None:
    import pybase64

    assert cipher.b64decode_strict is pybase64.b64decode


def test_without_pybase64_binascii_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    decode = _fallback(monkeypatch)
    assert decode is cipher._binascii_strict
    assert decode("QUJD", None, True) == b"ABC"
    with pytest.raises(binascii.Error):
        decode("QU!D", None, True)  # a character outside the alphabet


@given(st.binary(max_size=700))
def test_the_positional_call_is_strict_and_exact(data: bytes) -> None:
    text = binascii.b2a_base64(data, newline=False).decode("ascii")
    assert cipher.b64decode_strict(text, None, True) == data
    with pytest.raises(ValueError):
        cipher.b64decode_strict(text + "!", None, True)


@given(st.binary(max_size=700))
def test_both_decoders_give_the_bytes_encoded(data: bytes) -> None:
    text = binascii.b2a_base64(data, newline=False).decode("ascii")
    assert cipher.b64decode(text) == data == _BINASCII(text)
    assert sealed_bytes(SEALED_PREFIX + text) == data


@pytest.mark.parametrize("bad", ["QUJD!", "QUJ", "QU JD", "\u00e9QUJD", "QUJDRA"], ids=repr)
def test_both_decoders_refuse_what_no_sealer_writes(bad: str) -> None:
    with pytest.raises(ValueError):
        cipher.b64decode(bad)
    with pytest.raises(ValueError):
        _BINASCII(bad)


def test_turns_open_alike_with_either_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_data_key("session-b64", keyring("k1"))
    plain = [
        make_turn(n, content=f"text {n} " * (n % 7), metadata={"n": n} if n % 2 else {})
        for n in range(300)
    ]
    sealed = [sealing.seal_turn(t, key) for t in plain]
    assert all(t.content.startswith(SEALED_PREFIX) for t in sealed)

    def opened() -> list[SessionTurn]:
        return sealing.open_turns([copy.deepcopy(t) for t in sealed], key, record="r")

    fast = opened()
    monkeypatch.setattr(sealing, "b64decode_strict", _fallback(monkeypatch))
    slow = opened()
    assert [t.__dict__ for t in fast] == [t.__dict__ for t in slow]
    assert [t.__dict__ for t in fast] == [t.__dict__ for t in plain]
