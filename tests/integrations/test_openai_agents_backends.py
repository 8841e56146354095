"""The adapter on every conformance backend: round trips, atomicity, concurrency, lifecycle.

Each test runs once per spec of ``tests/stores/backends`` (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from agents import Runner, SQLiteSession
from agents.memory import SessionSettings

from lexigram.ai.session.branching.branch_manager import BranchManager
from lexigram.ai.session.exceptions import (
    SessionCapacityError,
    SessionClosedError,
    SessionExpiredError,
    SessionNotFoundError,
    SessionTransitionError,
    SessionValidationError,
)
from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession
from lexigram.ai.session.testing.conformance import FakeClock

from .conftest import MakeManager, sample_items
from .scripted import ScriptedModel, weather_agent, weather_script


async def test_every_item_type_round_trips(make_manager: MakeManager) -> None:
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    items = sample_items()
    await adapter.add_items(items[:3])
    await adapter.add_items(items[3:])
    assert await adapter.get_items() == items
    assert await adapter.get_items(limit=4) == items[-4:]
    # A second store instance on the same namespace (a restart, another process) sees them.
    other = await make_manager()
    reopened = await OpenAIAgentsSession.attach(other, adapter.session_id)
    assert await reopened.get_items() == items
    turns = await other.get_turns(adapter.session_id)
    assert [t.role for t in turns] == [
        "user", "user", "developer", "assistant", "assistant", "tool", "tool",
        "assistant", "assistant", "tool", "assistant",
    ]
    assert turns[4].tool_calls[0]["name"] == "get_weather"
    header = await other.get_header(adapter.session_id)
    assert header is not None and header.turn_count == len(items)


async def test_runner_history_matches_the_sdk_sqlite_session(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    """Items the SDK itself produces (reasoning, function call/output, messages)."""
    manager = await make_manager()
    ours = await OpenAIAgentsSession.create(manager, user_id="alice")
    sdk = SQLiteSession("reference", db_path=tmp_path / "sdk.db")
    try:
        for session in (ours, sdk):
            model = ScriptedModel(weather_script())
            agent = weather_agent(model)
            first = await Runner.run(agent, "Weather in Paris?", session=session)
            assert first.final_output == "It is sunny in Paris."
            second = await Runner.run(agent, "What did I ask?", session=session)
            assert second.final_output == "You asked about the weather in Paris."
            # The third model call saw the first run's history, read from the session.
            seen = model.inputs[2]
            assert isinstance(seen, list) and seen[0] == {
                "role": "user", "content": "Weather in Paris?"
            }
        expected = await sdk.get_items()
        got = await ours.get_items()
        assert got == expected
        kinds = [i.get("type", "message") for i in got]
        assert kinds == [
            "message", "reasoning", "function_call", "function_call_output",
            "message", "message", "message",
        ]
    finally:
        sdk.close()


async def test_any_json_item_round_trips_like_the_sdk_sqlite_session(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    """The Session protocol takes any JSON item: stored exactly, as SQLiteSession does."""
    items: list[Any] = [
        {"__enc__": 1, "v": 1, "kid": "hkdf-v1", "payload": "gAAAAAB-token=="},
        {"z": 1, "a": {"y": [1, 2.5, None], "b": "naïve 🎉"}},
        "a bare string", 42, 0.5, True, None, [1, {"k": "v"}], {},
        {"type": "message", "content": "a message without a role"},
        {"type": 7, "role": "user"},
    ]
    manager = await make_manager()
    ours = await OpenAIAgentsSession.create(manager, user_id="alice")
    sdk = SQLiteSession("reference", db_path=tmp_path / "sdk.db")
    try:
        for session in (ours, sdk):
            await session.add_items(items[:5])
            await session.add_items(items[5:])
        got = await ours.get_items()
        assert got == await sdk.get_items() == items
        assert [type(i) for i in got] == [type(i) for i in items]
        assert list(got[1]) == ["z", "a"] and list(got[1]["a"]) == ["y", "b"]
        assert await ours.get_items(limit=3) == await sdk.get_items(limit=3) == items[-3:]
        turns = await manager.get_turns(ours.session_id)
        assert [t.role for t in turns] == ["data"] * len(items)
        assert [t.metadata["openai_item_type"] for t in turns] == ["encrypted"] + ["opaque"] * 10
        for _ in range(len(items)):
            assert await ours.pop_item() == await sdk.pop_item()
        assert await ours.get_items() == [] == await sdk.get_items()
    finally:
        sdk.close()


async def test_items_with_lone_surrogates_round_trip_like_the_sdk_sqlite_session(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    """SQLiteSession stores them with json.dumps (escaped); so does the adapter."""
    items: list[Any] = [
        {"p": "\ud800"},
        "\udc80",
        {"role": "user", "content": "before \udfff after"},
        {"type": "function_call", "call_id": "c\ud800", "name": "f", "arguments": "{}"},
        {"\ud801key": [1, "x\ud802"]},
    ]
    manager = await make_manager()
    ours = await OpenAIAgentsSession.create(manager, user_id="alice")
    sdk = SQLiteSession("reference", db_path=tmp_path / "sdk.db")
    try:
        for session in (ours, sdk):
            await session.add_items(items)
        assert await ours.get_items() == await sdk.get_items() == items
        turns = await manager.get_turns(ours.session_id)
        assert turns[2].role == "user" and turns[2].content == "before \\udfff after"
        assert turns[3].tool_calls[0]["id"] == "c\\ud800"
        for _ in range(len(items)):
            assert await ours.pop_item() == await sdk.pop_item()
    finally:
        sdk.close()


async def test_add_items_is_all_or_nothing(make_manager: MakeManager) -> None:
    manager = await make_manager(max_turns_per_session=5)
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    await adapter.add_items([{"role": "user", "content": "one"}])
    with pytest.raises(TypeError) as info:
        await adapter.add_items([{"role": "user", "content": "two"}, {"when": object()}])
    assert isinstance(info.value, SessionValidationError)
    assert info.value.field == "items[1]"
    with pytest.raises(SessionCapacityError):
        await adapter.add_items([{"role": "user", "content": str(i)} for i in range(5)])
    assert await adapter.get_items() == [{"role": "user", "content": "one"}]
    header = await manager.get_header(adapter.session_id)
    assert header is not None and header.turn_count == 1


async def test_values_no_backend_keeps_are_named_by_item(make_manager: MakeManager) -> None:
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    deep: Any = "bottom"
    for _ in range(70):
        deep = [deep]
    cases = [
        ({"role": "user", "content": "x", "n": 2**63}, "items[1].n"),
        ({"role": "user", "content": "x", "deep": deep}, "items[1].deep" + "[0]" * 62),
    ]
    for bad, field in cases:
        with pytest.raises(SessionValidationError) as info:
            await adapter.add_items([{"role": "user", "content": "ok"}, bad])
        assert info.value.field == field
    assert await adapter.get_items() == []


async def test_concurrent_add_items_lose_nothing(make_manager: MakeManager) -> None:
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    tasks = 40

    async def writer(n: int) -> None:
        await adapter.add_items(
            [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]
        )

    await asyncio.gather(*(writer(n) for n in range(tasks)))
    items = await adapter.get_items()
    assert len(items) == 2 * tasks
    # Each add_items landed whole and contiguous.
    for first, second in zip(items[::2], items[1::2], strict=True):
        assert first["content"][1:] == second["content"][1:]
        assert (first["role"], second["role"]) == ("user", "assistant")
    assert {i["content"] for i in items} == {f"{p}{n}" for n in range(tasks) for p in "qa"}
    header = await manager.get_header(adapter.session_id)
    assert header is not None and header.turn_count == 2 * tasks


async def test_concurrent_pops_return_each_item_once(make_manager: MakeManager) -> None:
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    items = [{"role": "user", "content": f"m{n}"} for n in range(20)]
    await adapter.add_items(items)
    popped = await asyncio.gather(*(adapter.pop_item() for _ in range(25)))
    got = [p for p in popped if p is not None]
    assert sorted(got, key=lambda i: int(i["content"][1:])) == items
    assert popped.count(None) == 5
    assert await adapter.get_items() == []
    header = await manager.get_header(adapter.session_id)
    assert header is not None and header.turn_count == 0


def _script(seed: int) -> list[tuple[str, Any]]:
    rng = random.Random(seed)
    ops: list[tuple[str, Any]] = []
    counter = 0
    pool = sample_items()
    for _ in range(70):
        op = rng.choices(["add", "get", "pop", "clear"], weights=[5, 5, 3, 1])[0]
        if op == "add":
            batch = []
            for _ in range(rng.randint(0, 3)):
                counter += 1
                item = dict(rng.choice(pool))
                item["n"] = counter  # tell items apart
                batch.append(item)
            ops.append(("add", batch))
        elif op == "get":
            ops.append(("get", rng.choice([None, 0, 1, 2, 3, 5, 50, -1, -7])))
        else:
            ops.append((op, None))
    return ops


async def _apply(session: Any, op: str, arg: Any) -> Any:
    if op == "add":
        return await session.add_items(arg)
    if op == "get":
        return await session.get_items() if arg is None else await session.get_items(limit=arg)
    if op == "pop":
        return await session.pop_item()
    return await session.clear_session()


@pytest.mark.parametrize("settings_limit", [None, 3])
async def test_same_results_as_sdk_sqlite_session(
    make_manager: MakeManager, tmp_path: Path, settings_limit: int | None
) -> None:
    """limit / pop / clear semantics, call by call, beside the SDK's SQLiteSession."""
    settings = SessionSettings(limit=settings_limit)
    manager = await make_manager()
    ours = await OpenAIAgentsSession.create(manager, user_id="alice", session_settings=settings)
    sdk = SQLiteSession("reference", db_path=tmp_path / "sdk.db", session_settings=settings)
    try:
        script = _script(seed=9 + (settings_limit or 0))
        assert {op for op, _ in script} == {"add", "get", "pop", "clear"}
        compared = 0
        for step, (op, arg) in enumerate(script):
            expected = await _apply(sdk, op, arg)
            got = await _apply(ours, op, arg)
            assert got == expected, f"step {step}: {op}({arg!r})"
            compared += expected is not None and expected != []
            assert await ours.get_items(limit=-1) == await sdk.get_items(limit=-1), f"step {step}"
        assert compared > 10
        # Explicit edge cases at the end of the script.
        for limit in (None, 0, 1, 4, 10_000, -1):
            assert await ours.get_items(limit) == await sdk.get_items(limit)
        await ours.clear_session()
        await sdk.clear_session()
        assert await ours.pop_item() is None and await sdk.pop_item() is None
        assert await ours.get_items() == await sdk.get_items() == []
    finally:
        sdk.close()


async def test_closed_session_refuses_writes_but_reads(make_manager: MakeManager) -> None:
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    await adapter.add_items([{"role": "user", "content": "hi"}])
    await manager.close(adapter.session_id)
    with pytest.raises(SessionClosedError):
        await adapter.add_items([{"role": "user", "content": "again"}])
    with pytest.raises(SessionClosedError):
        await adapter.pop_item()
    with pytest.raises(SessionClosedError):
        await adapter.clear_session()
    assert await adapter.get_items() == [{"role": "user", "content": "hi"}]


async def test_turn_cap_closes_the_session(make_manager: MakeManager) -> None:
    manager = await make_manager(max_turns_per_session=3)
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    await adapter.add_items([{"role": "user", "content": str(n)} for n in range(3)])
    with pytest.raises(SessionClosedError):
        await adapter.add_items([{"role": "user", "content": "past the cap"}])
    assert len(await adapter.get_items()) == 3


async def test_suspended_session_refuses_writes(make_manager: MakeManager) -> None:
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    await manager.suspend(adapter.session_id)
    with pytest.raises(SessionTransitionError):
        await adapter.add_items([{"role": "user", "content": "hi"}])
    await manager.resume(adapter.session_id)
    await adapter.add_items([{"role": "user", "content": "hi"}])
    assert len(await adapter.get_items()) == 1


async def test_expired_session_refuses_writes(make_manager: MakeManager) -> None:
    manager = await make_manager(session_ttl=60)
    clock = FakeClock(datetime.now(UTC))  # the manager stamps writes with the real time
    manager.store.clock = clock
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    await adapter.add_items([{"role": "user", "content": "hi"}])
    clock.advance(61)
    with pytest.raises(SessionExpiredError):
        await adapter.add_items([{"role": "user", "content": "late"}])
    with pytest.raises(SessionExpiredError):
        await adapter.pop_item()
    with pytest.raises(SessionExpiredError):
        await adapter.clear_session()
    assert await adapter.get_items() == [{"role": "user", "content": "hi"}]


async def test_unknown_session_raises_not_found_without_create_missing(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager()
    adapter = OpenAIAgentsSession(manager, "never-created", create_missing=False)
    with pytest.raises(SessionNotFoundError):
        await adapter.get_items()
    with pytest.raises(SessionNotFoundError):
        await adapter.add_items([{"role": "user", "content": "hi"}])
    with pytest.raises(SessionNotFoundError):
        await adapter.pop_item()
    with pytest.raises(SessionNotFoundError):
        await adapter.clear_session()
    assert await manager.get_header("never-created") is None


@pytest.mark.parametrize("first_call", ["get", "add", "pop", "clear"])
async def test_a_caller_chosen_id_is_created_on_first_use(
    make_manager: MakeManager, first_call: str
) -> None:
    manager = await make_manager()
    adapter = OpenAIAgentsSession(manager, "user_123", session_settings={"limit": 5})
    assert await manager.get_header("user_123") is None  # the constructor does no I/O
    first = await _apply(adapter, *{
        "get": ("get", None), "add": ("add", [{"role": "user", "content": "hi"}]),
        "pop": ("pop", None), "clear": ("clear", None),
    }[first_call])
    assert first in (None, [])
    header = await manager.get_header("user_123")
    assert header is not None
    assert (header.session_id, header.user_id, header.status.value) == (
        "user_123", "user_123", "active"
    )
    expected = [{"role": "user", "content": "hi"}] if first_call == "add" else []
    assert await adapter.get_items() == expected
    # Another adapter (another request, process or manager) finds the same conversation.
    other = OpenAIAgentsSession(await make_manager(), "user_123", user_id="someone-else")
    await other.add_items([{"role": "assistant", "content": "hello"}])
    assert await adapter.get_items() == [*expected, {"role": "assistant", "content": "hello"}]
    owner = await manager.get_header("user_123")
    assert owner is not None and owner.user_id == "user_123"


async def test_concurrent_first_use_creates_one_session(make_manager: MakeManager) -> None:
    managers = [await make_manager() for _ in range(3)]
    adapters = [
        OpenAIAgentsSession(managers[n % 3], "thread-42", user_id="alice") for n in range(12)
    ]
    await asyncio.gather(
        *(a.add_items([{"role": "user", "content": f"m{n}"}]) for n, a in enumerate(adapters))
    )
    items = await adapters[0].get_items()
    assert sorted(i["content"] for i in items) == sorted(f"m{n}" for n in range(12))
    page = await managers[0].list_sessions("alice")
    assert [s.session_id for s in page.items] == ["thread-42"]
    header = await managers[1].get_header("thread-42")
    assert header is not None and header.turn_count == 12


async def test_a_deleted_id_starts_afresh_and_a_purged_id_is_refused(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager()
    adapter = OpenAIAgentsSession(manager, "ticket-7")
    await adapter.add_items([{"role": "user", "content": "hi"}])
    assert await manager.delete("ticket-7")
    # As with the SDK's own sessions, the next use starts an empty conversation.
    assert await adapter.get_items() == []
    header = await manager.get_header("ticket-7")
    assert header is not None and header.turn_count == 0
    # An id the sweeper purged is refused while its tombstone lasts, naming the id.
    await manager.close("ticket-7")
    until = datetime.now(UTC) + timedelta(hours=1)
    assert await manager.store.purge("ticket-7", tombstone_until=until)
    with pytest.raises(SessionValidationError) as info:
        await adapter.add_items([{"role": "user", "content": "x"}])
    assert info.value.field == "session_id"
    assert "ticket-7" in str(info.value)
    assert await manager.get_header("ticket-7") is None


async def test_an_expired_conversation_starts_afresh_after_delete(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager(session_ttl=60)
    clock = FakeClock(datetime.now(UTC))
    manager.store.clock = clock
    adapter = OpenAIAgentsSession(manager, "user_9")
    await adapter.add_items([{"role": "user", "content": "old"}])
    clock.advance(61)
    with pytest.raises(SessionExpiredError):
        await adapter.add_items([{"role": "user", "content": "late"}])
    assert await adapter.get_items() == [{"role": "user", "content": "old"}]
    assert await manager.delete("user_9")
    await adapter.add_items([{"role": "user", "content": "new"}])
    assert await adapter.get_items() == [{"role": "user", "content": "new"}]
    header = await manager.get_header("user_9")
    assert header is not None and header.status.value == "active" and header.turn_count == 1


async def test_create_with_a_chosen_id(make_manager: MakeManager) -> None:
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="bob", session_id="chat-1")
    assert adapter.session_id == "chat-1" and adapter.user_id == "bob"
    with pytest.raises(SessionValidationError) as info:
        await OpenAIAgentsSession.create(manager, user_id="bob", session_id="chat-1")
    assert info.value.field == "session_id"
    await adapter.add_items([{"role": "user", "content": "hi"}])
    assert await adapter.get_items() == [{"role": "user", "content": "hi"}]


async def test_turns_written_by_the_manager_are_visible_to_the_sdk(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    await manager.add_message(adapter.session_id, "user", "from our API")
    await adapter.add_items([{"role": "assistant", "content": "from the SDK"}])
    assert await adapter.get_items() == [
        {"role": "user", "content": "from our API"},
        {"role": "assistant", "content": "from the SDK"},
    ]


async def test_fork_checkpoint_and_restore_a_conversation(make_manager: MakeManager) -> None:
    manager = await make_manager()
    branches = BranchManager(manager.store)
    main = await OpenAIAgentsSession.create(
        manager, user_id="alice", session_settings={"limit": 10}
    )
    base = [{"role": "user", "content": "plan a trip"}, {"role": "assistant", "content": "where?"}]
    await main.add_items(base)
    checkpoint = await manager.checkpoint(main.session_id)
    branch = await main.fork(branches, "try-rome")
    assert branch.session_id != main.session_id
    assert branch.session_settings == main.session_settings
    await branch.add_items([{"role": "user", "content": "Rome"}])
    await main.add_items([{"role": "user", "content": "Oslo"}])
    assert await branch.get_items() == [*base, {"role": "user", "content": "Rome"}]
    assert await main.get_items() == [*base, {"role": "user", "content": "Oslo"}]
    await manager.restore(checkpoint.checkpoint_id)
    assert await main.get_items() == base
    merged = await branches.merge(main.session_id, branch.session_id)
    assert merged.turn_count == 3
    assert await main.get_items() == [*base, {"role": "user", "content": "Rome"}]


async def _cancelled_after(call: Coroutine[Any, Any, None], ticks: int) -> None:
    """Run ``call`` as a task and cancel it after ``ticks`` turns of the event loop."""
    task = asyncio.create_task(call)
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_cancelled_add_items_is_all_or_nothing(make_manager: MakeManager) -> None:
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    batch = [{"role": "user", "content": f"m{n}"} for n in range(20)]
    outcomes = set()
    for delay in (0, 1, 2, 3, 5, 8):
        await adapter.clear_session()
        await _cancelled_after(adapter.add_items(batch), delay)
        items = await adapter.get_items()
        assert items in ([], batch), f"delay {delay}: {len(items)} items"
        outcomes.add(len(items))
    # The session is still usable afterwards.
    await adapter.add_items([{"role": "user", "content": "after"}])
    assert (await adapter.get_items(limit=1)) == [{"role": "user", "content": "after"}]
    assert outcomes <= {0, len(batch)}, outcomes


async def test_a_cancelled_first_add_items_still_stores_its_items(
    make_manager: MakeManager,
) -> None:
    """The create-on-first-use and the append are settled as one write."""
    manager = await make_manager()
    batch = [{"role": "user", "content": "first words"}, {"role": "user", "content": "two"}]
    for delay in (1, 2, 3):  # at 0 the task is cancelled before it starts: nothing runs
        adapter = OpenAIAgentsSession(manager, f"first-{uuid.uuid4().hex[:8]}", user_id="alice")
        await _cancelled_after(adapter.add_items(batch), delay)
        assert await adapter.get_items() == batch, f"delay {delay}"


async def test_control_characters_and_big_numbers_survive(make_manager: MakeManager) -> None:
    """Tool outputs can carry NUL and other control characters; nothing may be lost."""
    manager = await make_manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    items = [
        {"type": "function_call_output", "call_id": "c1", "output": "a\u0000b\u001f\u2028c 🎉"},
        {"role": "user", "content": "x", "n": 2**62, "f": 1e-300, "neg": -0.5, "t": True},
        {"role": "user", "content": "", "nested": {"deep": [[{"k": None}]]}},
    ]
    await adapter.add_items(items)
    other = await make_manager()
    assert await OpenAIAgentsSession(other, adapter.session_id).get_items() == items


async def test_an_item_too_large_for_the_server_is_named_by_item() -> None:
    """MariaDB refuses a value larger than its max_allowed_packet naming the stored turn:
    the adapter passed ``turns[1]`` on to the SDK user, who gave ``items`` (an outside
    audit)."""
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
    from tests.services import MARIADB_URL, require_mariadb

    require_mariadb()
    prefix = f"lxagents_{uuid.uuid4().hex[:8]}_"
    store = DatabaseSessionStore(MARIADB_URL, table_prefix=prefix)
    await store.initialize()
    try:
        adapter = OpenAIAgentsSession(SessionManagerImpl(store), "big-conv")
        big = {"type": "function_call_output", "call_id": "c1", "output": "x" * 9_000_000}
        with pytest.raises(SessionValidationError) as info:
            await adapter.add_items([{"role": "user", "content": "hi"}, big])
        assert info.value.field == "items[1]", info.value.field
        assert await adapter.get_items() == []
    finally:
        await store.close()
        await drop_schema(MARIADB_URL, table_prefix=prefix)
