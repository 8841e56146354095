"""The pruner counts what goes to the model and refuses settings it cannot use (an outside
audit): tool-call arguments counted as 0 tokens, ``always_keep_roles="system"`` read as
its letters, token-counter settings failing with raw Python errors or accepted as
fractions, and system messages past the budget kept without a word."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.llm import ChatMessage
from lexigram.contracts.ai.llm.types import FunctionCall, ToolCall
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session import RelevanceContextPruner
from lexigram.ai.session.context import CallableTokenCounter, HeuristicTokenCounter
from lexigram.ai.session.exceptions import SessionValidationError

ARGS = json.dumps({"document": "lorem ipsum dolor sit amet " * 300})


def turn(role: str, content: str, **fields: Any) -> SessionTurn:
    return SessionTurn(
        turn_id=f"t{datetime.now(UTC).timestamp()}",
        role=role,
        content=content,
        timestamp=datetime.now(UTC),
        **fields,
    )


def tool_history() -> list[SessionTurn]:
    return [
        turn("system", "Be brief."),
        turn("user", "store the report"),
        turn(
            "assistant",
            "",
            tool_calls=[
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "store_doc", "arguments": ARGS},
                }
            ],
        ),
        turn("tool", "stored", metadata={"tool_call_id": "c1"}),
        turn("assistant", "Done."),
    ]


# ------------------------------------------------------------- what is counted
def test_tool_call_arguments_count_toward_the_budget() -> None:
    history = tool_history()
    pruner = RelevanceContextPruner()
    result = pruner.select(history, "report", token_budget=100)
    assert 2 not in result.kept_indices and 3 not in result.kept_indices  # call + its result
    assert result.tokens <= 100 and not result.over_budget
    arguments = HeuristicTokenCounter().count(ARGS)
    assert pruner.count_tokens([history[2]]) > arguments  # ~2,000 tokens, was 7
    # with room for it the unit goes in, and the result says what it costs
    big = pruner.select(history, "report", token_budget=10_000)
    assert big.kept_indices == [0, 1, 2, 3, 4]
    assert big.tokens == pruner.count_tokens(history) > arguments


def test_chat_message_tool_calls_name_id_and_thinking_count() -> None:
    counter = HeuristicTokenCounter()
    pruner = RelevanceContextPruner(token_counter=counter)
    plain = ChatMessage(role="assistant", content="ok")
    call = ChatMessage(
        role="assistant",
        content="ok",
        tool_calls=[ToolCall(id="c1", function=FunctionCall(name="store_doc", arguments=ARGS))],
    )
    assert pruner.count_tokens([call]) - pruner.count_tokens([plain]) >= counter.count(ARGS)
    thinking = ChatMessage(
        role="assistant", content="ok", thinking_blocks=[{"type": "thinking", "thinking": ARGS}]
    )
    assert pruner.count_tokens([thinking]) - pruner.count_tokens([plain]) >= counter.count(ARGS)
    result = ChatMessage(role="tool", content="stored", tool_call_id="call_" + "x" * 40)
    bare = ChatMessage(role="tool", content="stored")
    assert pruner.count_tokens([result]) > pruner.count_tokens([bare])
    named = ChatMessage(role="user", content="hi", name="a-very-long-participant-name")
    assert pruner.count_tokens([named]) > pruner.count_tokens([ChatMessage("user", "hi")])


def test_skill_results_count_and_the_per_message_framing_is_added_once() -> None:
    counter = CallableTokenCounter(len, per_message=4)
    pruner = RelevanceContextPruner(token_counter=counter)
    results = [{"skill": "summarize", "output": "x" * 500}]
    with_results = turn("assistant", "ok", skill_results=results)
    without = turn("assistant", "ok")
    extra = len(json.dumps(results, separators=(",", ":")))
    assert pruner.count_tokens([without]) == 4 + len("assistant") + len("ok")
    assert pruner.count_tokens([with_results]) == pruner.count_tokens([without]) + extra


def test_a_plain_text_history_costs_what_it_did() -> None:
    counter = HeuristicTokenCounter()
    pruner = RelevanceContextPruner(token_counter=counter)
    history = [ChatMessage("user", "hello there"), turn("assistant", "general kenobi")]
    expected = counter.count_message("user", "hello there") + counter.count_message(
        "assistant", "general kenobi"
    )
    assert pruner.count_tokens(history) == expected


# ------------------------------------------------------------ always_keep_roles
def test_always_keep_roles_takes_one_role_as_a_string() -> None:
    history = [ChatMessage("system", "You are helpful. " * 20)] + [
        ChatMessage(["user", "assistant"][i % 2], f"message number {i}") for i in range(10)
    ]
    pruner = RelevanceContextPruner(always_keep_roles="system")
    assert pruner.always_keep_roles == frozenset({"system"})
    assert 0 in pruner.select(history, "", max_turns=3).kept_indices
    assert RelevanceContextPruner(always_keep_roles="System").always_keep_roles == {"system"}


def test_always_keep_roles_takes_enums_and_an_empty_list() -> None:
    class Role(str, enum.Enum):  # noqa: UP042 - str() is not the value here
        SYSTEM = "system"
        DEVELOPER = "Developer"

    pruner = RelevanceContextPruner(always_keep_roles=[Role.SYSTEM, Role.DEVELOPER])
    assert pruner.always_keep_roles == {"system", "developer"}
    assert RelevanceContextPruner(always_keep_roles=()).always_keep_roles == frozenset()


@pytest.mark.parametrize("value", [None, [1], ["system", None], [""], 3, b"system", {"a": 1}])
def test_always_keep_roles_of_the_wrong_kind_is_refused(value: Any) -> None:
    with pytest.raises(SessionValidationError) as info:
        RelevanceContextPruner(always_keep_roles=value)
    assert info.value.field == "always_keep_roles"


# -------------------------------------------------------- token-counter settings
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: HeuristicTokenCounter(chars_per_token="4"), "chars_per_token"),  # type: ignore[arg-type]
        (lambda: HeuristicTokenCounter(chars_per_token=None), "chars_per_token"),  # type: ignore[arg-type]
        (lambda: HeuristicTokenCounter(chars_per_token=float("nan")), "chars_per_token"),
        (lambda: HeuristicTokenCounter(chars_per_token=float("inf")), "chars_per_token"),
        (lambda: HeuristicTokenCounter(chars_per_token=True), "chars_per_token"),
        (lambda: HeuristicTokenCounter(chars_per_token=0), "chars_per_token"),
        (lambda: HeuristicTokenCounter(tokens_per_piece=float("inf")), "tokens_per_piece"),
        (lambda: HeuristicTokenCounter(tokens_per_piece="1.3"), "tokens_per_piece"),  # type: ignore[arg-type]
        (lambda: HeuristicTokenCounter(tokens_per_piece=-1), "tokens_per_piece"),
        (lambda: HeuristicTokenCounter(per_message=None), "per_message"),  # type: ignore[arg-type]
        (lambda: HeuristicTokenCounter(per_message=2.5), "per_message"),  # type: ignore[arg-type]
        (lambda: HeuristicTokenCounter(per_message=4.0), "per_message"),  # type: ignore[arg-type]
        (lambda: HeuristicTokenCounter(per_message=True), "per_message"),
        (lambda: HeuristicTokenCounter(per_message=-1), "per_message"),
        (lambda: CallableTokenCounter(len, per_message="4"), "per_message"),  # type: ignore[arg-type]
        (lambda: CallableTokenCounter(len, per_message=2.5), "per_message"),  # type: ignore[arg-type]
        (lambda: CallableTokenCounter(len, per_message=None), "per_message"),  # type: ignore[arg-type]
    ],
)
def test_bad_counter_settings_name_the_field(make: Any, field: str) -> None:
    with pytest.raises(SessionValidationError) as info:
        make()
    assert info.value.field == field


def test_good_counter_settings_count_in_whole_tokens() -> None:
    counter = HeuristicTokenCounter(chars_per_token=3, tokens_per_piece=1, per_message=0)
    assert counter.count_message("user", "hi") == 3  # ceil(4 / 3) + 1
    assert isinstance(counter.count_message("user", "hi"), int)
    huge = HeuristicTokenCounter(tokens_per_piece=1e308)  # finite, yet overflows a product
    assert isinstance(huge.count("a b c"), int)
    assert CallableTokenCounter(len, per_message=0).count_message("user", "hi") == 6


# --------------------------------------------------------------- over the budget
def test_system_messages_past_the_budget_are_kept_and_flagged() -> None:
    history = [ChatMessage("system", "You are helpful. " * 200)] + [
        ChatMessage(["user", "assistant"][i % 2], f"message number {i}") for i in range(10)
    ]
    pruner = RelevanceContextPruner()
    result = pruner.select(history, "number", token_budget=100)
    assert result.kept_indices == [0]
    assert result.tokens > 100 and result.over_budget
    assert pruner.fit(history, "number", token_budget=100) == [history[0]]
    within = pruner.select(history, "number", token_budget=10_000)
    assert not within.over_budget and within.tokens <= 10_000
    assert not pruner.select(history, "number", max_turns=2).over_budget  # no budget given


@pytest.mark.parametrize(
    "text", ["这是一个很长的中文句子没有空格", "こんにちは世界です", "안녕하세요반갑습니다"]
)
def test_text_without_spaces_in_cjk_counts_at_least_a_token_per_character(text: str) -> None:
    """A run of CJK characters was one "word": 15 of them counted 4 tokens, where a
    tokenizer gives about one each, so a history "fitted" to a budget overran it."""
    from lexigram.ai.session.context.tokens import HeuristicTokenCounter

    assert HeuristicTokenCounter().count(text) >= len(text)


def test_an_always_kept_tool_call_keeps_its_results() -> None:
    """With ``always_keep_roles="assistant"`` the assistant's tool call was kept and its
    ``tool`` result dropped: chat APIs refuse a call without its answer."""
    from types import SimpleNamespace

    from lexigram.ai.session.context.pruner import RelevanceContextPruner

    history = [
        SimpleNamespace(role="user", content="look up order 42 " * 20),
        SimpleNamespace(role="assistant", content="", tool_calls=[{"name": "lookup"}]),
        SimpleNamespace(role="tool", content="order 42: shipped " * 30),
        SimpleNamespace(role="user", content="thanks"),
    ]
    pruner = RelevanceContextPruner(always_keep_roles="assistant")
    result = pruner.select(history, "thanks", token_budget=40)
    kept = set(result.kept_indices)
    assert 1 in kept and 2 in kept


@pytest.mark.parametrize(
    "text", ["𠀀𠀁𠀂𠀃", "ｶﾀｶﾅ", "丽丸乁𠄢", "\u1100\u1161\u11a8\u1102\u1161"]
)
def test_supplementary_ideographs_half_width_kana_and_jamo_count_per_character(
    text: str,
) -> None:
    from lexigram.ai.session.context.tokens import HeuristicTokenCounter

    assert HeuristicTokenCounter().count(text) >= len(text)
