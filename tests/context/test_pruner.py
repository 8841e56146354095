"""``RelevanceContextPruner`` and the token counters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.llm import ChatMessage
from lexigram.contracts.ai.session import ContextPrunerProtocol, SessionTurn

from lexigram.ai.session import RelevanceContextPruner
from lexigram.ai.session.context import (
    CallableTokenCounter,
    HeuristicTokenCounter,
    TokenCounter,
)
from lexigram.ai.session.context.pruner import terms
from lexigram.ai.session.exceptions import SessionValidationError


def msg(role: str, content: Any) -> ChatMessage:
    return ChatMessage(role=role, content=content)


HISTORY = [
    msg("system", "You are a travel assistant."),
    msg("user", "What's the weather in Paris tomorrow?"),
    msg("assistant", "Sunny in Paris, 24 degrees."),
    msg("user", "Recommend a pasta recipe."),
    msg("assistant", "Try carbonara: eggs, guanciale, pecorino."),
    msg("user", "How long is the train from London?"),
    msg("assistant", "About 2h20 on the Eurostar."),
    msg("user", "And what about the museums there?"),
]


def test_pruner_implements_the_contract_protocol() -> None:
    assert isinstance(RelevanceContextPruner(), ContextPrunerProtocol)


async def test_keeps_system_newest_and_relevant_turns_in_chronological_order() -> None:
    pruner = RelevanceContextPruner(keep_last=1)
    kept = await pruner.prune(HISTORY, "pasta carbonara recipe", max_turns=4)
    assert kept[0] is HISTORY[0]  # system always kept
    assert HISTORY[-1] in kept  # the newest turn
    assert HISTORY[4] in kept  # the carbonara answer is the most relevant
    assert HISTORY[3] in kept  # ... and pulls its question in
    assert len(kept) == 4
    positions = [HISTORY.index(m) for m in kept]
    assert positions == sorted(positions)


async def test_relevance_changes_with_the_query() -> None:
    pruner = RelevanceContextPruner(keep_last=1)
    weather = {HISTORY.index(m) for m in await pruner.prune(HISTORY, "Paris weather", 3)}
    train = {HISTORY.index(m) for m in await pruner.prune(HISTORY, "train London", 3)}
    # system + newest + the best of the rest
    assert weather - {0, 7} <= {1, 2} and len(weather) == 3
    assert train - {0, 7} <= {5, 6} and len(train) == 3


async def test_by_default_a_relevant_old_turn_beats_an_irrelevant_newest_one() -> None:
    kept = await RelevanceContextPruner().prune(HISTORY, "carbonara", max_turns=2)
    assert kept == [HISTORY[0], HISTORY[4]]


async def test_without_a_query_recency_decides() -> None:
    kept = await RelevanceContextPruner().prune(HISTORY, "", max_turns=4)
    assert kept == [HISTORY[0], *HISTORY[-3:]]


async def test_system_messages_come_first_within_the_limit() -> None:
    history = [msg("system", "rule one"), msg("system", "rule two"), *HISTORY[1:4]]
    kept = await RelevanceContextPruner().prune(history, "weather", max_turns=1)
    assert kept == history[:1]
    kept = await RelevanceContextPruner().prune(history, "weather", max_turns=3)
    assert kept == [*history[:2], history[2]]
    everything = await RelevanceContextPruner().prune(history, "x", max_turns=100)
    assert everything == history


def test_fit_respects_the_token_budget_and_keeps_tool_results_with_their_call() -> None:
    counter = HeuristicTokenCounter()
    history = [
        msg("system", "be brief"),
        msg("user", "lookup the stock price of ACME " + "padding " * 40),
        msg("assistant", "calling the quote tool"),
        msg("tool", "ACME 123.45 USD"),
        msg("user", "what is the ACME stock price?"),
    ]
    pruner = RelevanceContextPruner(token_counter=counter)
    sizes = [counter.count_message(m.role, m.content) for m in history]
    budget = sizes[0] + sizes[2] + sizes[3] + sizes[4]  # everything but the padded turn
    result = pruner.select(history, "ACME stock price quote", token_budget=budget)
    assert result.kept_indices == [0, 2, 3, 4]
    assert result.tokens <= budget and result.tokens == pruner.count_tokens(result.messages)
    assert result.dropped == 1
    # too small for the call + its tool result together: neither is kept alone
    small = pruner.fit(history, "ACME stock price quote", sizes[0] + sizes[4] + sizes[3])
    assert history[3] not in small and history[2] not in small
    assert small == [history[0], history[4]]


def test_fit_works_on_session_turns() -> None:
    now = datetime.now(UTC)
    turns = [
        SessionTurn(turn_id=f"t{i}", role=r, content=c, timestamp=now)
        for i, (r, c) in enumerate(
            [("user", "hello"), ("assistant", "hi there"), ("user", "tell me about quasars")]
        )
    ]
    kept = RelevanceContextPruner().fit(turns, "quasars", token_budget=10_000)
    assert kept == turns
    assert RelevanceContextPruner().fit(turns, "quasars", token_budget=0) == []


def test_multimodal_and_enum_roles_are_understood() -> None:
    @dataclass
    class Role:
        value: str

    @dataclass
    class Message:
        role: Any
        content: Any

    history = [
        Message(Role("SYSTEM"), "sys"),
        Message("user", [{"type": "text", "text": "photo of a giraffe"}, {"type": "image_url"}]),
        Message("assistant", "nice zebra"),
        Message("user", "what animal?"),
    ]
    kept = RelevanceContextPruner(keep_last=0).select(history, "giraffe", max_turns=2)
    assert kept.kept_indices == [0, 1]


def test_heuristic_counter_is_offline_monotonic_and_swappable() -> None:
    counter = HeuristicTokenCounter()
    assert isinstance(counter, TokenCounter)
    assert counter.count("") == 0
    short, long = counter.count("hello world"), counter.count("hello world " * 50)
    assert 1 <= short < long
    assert counter.count("x" * 400) >= 100  # long unbroken strings by characters
    assert counter.count_message("user", "hi") > counter.count("hi")

    words = CallableTokenCounter(lambda text: len(text.split()), per_message=0)
    pruner = RelevanceContextPruner(token_counter=words)
    history = [msg("user", "one two three"), msg("assistant", "four five")]
    # each message also counts its role as one word
    assert pruner.select(history, "", token_budget=3).kept_indices == [1]
    assert pruner.count_tokens(history) == 7


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: p.select("nope", "q"), "history"),
        (lambda p: p.select([object()], "q"), "history[0]"),
        (lambda p: p.select(HISTORY, 3), "current_query"),
        (lambda p: p.select(HISTORY, "q", max_turns=-1), "max_turns"),
        (lambda p: p.fit(HISTORY, "q", token_budget=1.5), "token_budget"),
    ],
)
def test_bad_input_names_the_field(call: Any, field: str) -> None:
    with pytest.raises(SessionValidationError) as err:
        call(RelevanceContextPruner())
    assert err.value.field == field


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(SessionValidationError) as err:
        RelevanceContextPruner(half_life=0)
    assert err.value.field == "half_life"
    with pytest.raises(SessionValidationError) as err:
        RelevanceContextPruner(token_counter="tiktoken")  # type: ignore[arg-type]
    assert err.value.field == "token_counter"
    with pytest.raises(SessionValidationError) as err:
        CallableTokenCounter(lambda s: -1).count("x")
    assert err.value.field == "count"


def test_terms_drop_stop_words_and_stem_lightly() -> None:
    assert terms("The trains are running to London") == ["train", "runn", "london"]


async def test_never_more_than_max_turns_even_with_many_system_messages() -> None:
    history = [msg("system", f"rule {i}") for i in range(4)] + [msg("user", "hello")]
    kept = await RelevanceContextPruner().prune(history, "hello", max_turns=2)
    assert kept == history[:2]


@pytest.mark.parametrize("field", ["relevance_weight", "recency_weight"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_weight_that_is_not_finite_is_refused(field: str, value: float) -> None:
    """A NaN weight made every score NaN and kept the oldest messages."""
    with pytest.raises(SessionValidationError, match=field):
        RelevanceContextPruner(**{field: value})


def test_half_life_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(SessionValidationError, match="half_life"):
        RelevanceContextPruner(half_life="8")  # type: ignore[arg-type]
