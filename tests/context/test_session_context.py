"""SessionContext: contextvar binding, the contract protocol, lazy creation."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from lexigram.contracts.ai.session import SessionContextProtocol, SessionStatus
from lexigram.contracts.ai.session import SessionError as ContractSessionError
from tests.stores.backends import BackendSpec, all_specs

from lexigram.ai.session.context import SessionContext
from lexigram.ai.session.exceptions import (
    SessionError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.in_memory import InMemorySessionStore


@pytest.fixture
def manager() -> SessionManagerImpl:
    return SessionManagerImpl(InMemorySessionStore(), {"max_sessions_per_user": 3})


def test_implements_the_contract_protocol(manager: SessionManagerImpl) -> None:
    assert isinstance(SessionContext(manager), SessionContextProtocol)
    assert isinstance(SessionContext(), SessionContextProtocol)


def test_unbound_context_raises_session_error() -> None:
    context = SessionContext()
    assert context.bound is False and context.user_id is None and context.created is False
    with pytest.raises(SessionError):
        _ = context.session_id
    with pytest.raises(ContractSessionError):  # the contract's error, as the protocol says
        _ = context.state
    with pytest.raises(SessionError):
        context.pinned()


async def test_bind_and_unbind(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    context = SessionContext(manager)
    other_view = SessionContext()  # any instance sees the current binding
    token = context.bind(state)
    try:
        assert context.session_id == state.session_id and context.state == state
        assert other_view.session_id == state.session_id
        assert context.user_id == "alice" and context.bound
    finally:
        context.unbind(token)
    assert not context.bound and not other_view.bound


async def test_nested_bind_restores_the_outer_session(manager: SessionManagerImpl) -> None:
    outer, inner = await manager.create("alice"), await manager.create("alice")
    context = SessionContext(manager)
    outer_token = context.bind(outer)
    inner_token = context.bind(inner)
    assert context.session_id == inner.session_id
    context.unbind(inner_token)
    assert context.session_id == outer.session_id
    context.unbind(outer_token)
    assert not context.bound


async def test_pinned_view_survives_other_contexts_and_dies_with_unbind(
    manager: SessionManagerImpl,
) -> None:
    state = await manager.create("alice")
    context = SessionContext(manager)
    token = context.bind(state)
    view = context.pinned()
    # seen from a context where nothing is bound
    empty = contextvars.Context()
    assert empty.run(lambda: view.session_id) == state.session_id
    assert empty.run(lambda: SessionContext().bound) is False
    context.unbind(token)
    assert view.bound is False


async def test_tasks_do_not_see_each_others_binding(manager: SessionManagerImpl) -> None:
    context = SessionContext(manager)
    states = [await manager.create(f"user{i}") for i in range(3)]

    async def work(i: int) -> tuple[str, str]:
        token = context.bind(states[i])
        try:
            await asyncio.sleep(0.01 * (3 - i))
            return states[i].session_id, context.session_id
        finally:
            context.unbind(token)

    for expected, seen in await asyncio.gather(*(work(i) for i in range(3))):
        assert expected == seen
    assert not context.bound


async def test_ensure_creates_once_for_the_bound_user(manager: SessionManagerImpl) -> None:
    context = SessionContext(manager)
    token = context.bind(None, user_id="alice")
    try:
        assert not context.bound
        first = await context.ensure(metadata={"via": "test"}, system_prompt="be brief")
        second = await context.ensure()
        assert first is second and context.created
        assert first.user_id == "alice" and first.metadata == {"via": "test"}
        assert first.system_prompt == "be brief"
        assert await manager.count_live_sessions("alice") == 1
    finally:
        context.unbind(token)


async def test_ensure_without_user_or_binding_is_refused(manager: SessionManagerImpl) -> None:
    context = SessionContext(manager)
    with pytest.raises(SessionError, match="bound"):
        await context.ensure()
    token = context.bind(None)
    try:
        with pytest.raises(SessionError, match="no user"):
            await context.ensure()
    finally:
        context.unbind(token)


async def test_get_or_create_returns_the_bound_live_session(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    context = SessionContext(manager)
    token = context.bind(state, user_id="alice")
    try:
        assert await context.get_or_create("alice") is state
        with pytest.raises(SessionValidationError, match="user_id"):
            await context.get_or_create("mallory")
        with pytest.raises(SessionValidationError, match="user_id"):
            await context.get_or_create("")
    finally:
        context.unbind(token)


async def test_get_or_create_in_a_binding_without_user_is_refused(
    manager: SessionManagerImpl,
) -> None:
    context = SessionContext(manager)
    token = context.bind(None)  # what the middleware binds for a request with no user
    try:
        with pytest.raises(SessionError, match="no user"):
            await context.get_or_create("victim")
    finally:
        context.unbind(token)
    assert (await manager.list_sessions("victim")).items == []


async def test_get_or_create_outside_a_request_binds_a_new_session(
    manager: SessionManagerImpl,
) -> None:
    context = SessionContext(manager)

    async def run() -> tuple[str, str]:
        state = await context.get_or_create("bob")
        again = await context.get_or_create("bob")
        return state.session_id, again.session_id

    # in a task, so the binding does not leak into this test's context
    first, second = await asyncio.create_task(run())
    assert first == second
    assert not context.bound
    header = await manager.get_header(first)
    assert header is not None and header.user_id == "bob" and header.status == SessionStatus.ACTIVE


async def test_get_or_create_outside_a_request_gets_the_users_existing_session(
    manager: SessionManagerImpl,
) -> None:
    existing = await manager.create("carol")
    context = SessionContext(manager)

    async def job(user: str) -> str:
        return (await context.get_or_create(user)).session_id

    # each job in a task of its own (no binding yet): the same existing session, no new one
    found = await asyncio.gather(*(asyncio.create_task(job("carol")) for _ in range(7)))
    assert found == [existing.session_id] * 7
    assert len((await manager.list_sessions("carol")).items) == 1


async def test_get_or_create_outside_a_request_serves_one_user_after_another(
    manager: SessionManagerImpl,
) -> None:
    context = SessionContext(manager)

    async def worker() -> tuple[str, str, str]:
        first = await context.get_or_create("u1")
        second = await context.get_or_create("u2")  # no request's user to hold to
        child = await asyncio.create_task(context.get_or_create("u3"))
        return first.user_id, second.user_id, child.user_id

    assert await asyncio.create_task(worker()) == ("u1", "u2", "u3")


async def test_get_or_create_without_manager_is_a_clear_error() -> None:
    with pytest.raises(SessionError, match="manager"):
        await SessionContext().get_or_create("alice")


async def test_add_message_refresh_and_turns(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    context = SessionContext(manager)
    token = context.bind(state)
    try:
        await context.add_message("user", "hello")
        await context.add_message("assistant", "hi", tokens_used=3)
        assert context.state.turn_count == 2 and context.state.total_tokens == 3
        assert [t.content for t in await context.turns()] == ["hello", "hi"]
        assert [t.content for t in await context.turns(last=1)] == ["hi"]
        full = await context.refresh()
        assert [t.role for t in full.turns] == ["user", "assistant"]
        await manager.delete(state.session_id)
        with pytest.raises(SessionNotFoundError):
            await context.refresh()
        assert not context.bound
    finally:
        context.unbind(token)


def test_bad_arguments_name_the_field(manager: SessionManagerImpl) -> None:
    with pytest.raises(SessionValidationError, match="session_manager"):
        SessionContext(object())  # type: ignore[arg-type]
    with pytest.raises(SessionValidationError, match="state"):
        SessionContext(manager).bind("nope")  # type: ignore[arg-type]
    with pytest.raises(SessionValidationError, match="user_id"):
        SessionContext(manager).bind(None, user_id=" ")


_RACE_SPECS = [s for s in all_specs() if s.name in {"in_memory", "sqlite", "postgres", "redis"}]


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name, marks=s.marks) for s in _RACE_SPECS])
async def test_get_or_create_outside_a_request_creates_one_session_for_concurrent_tasks(
    spec: BackendSpec,
) -> None:
    # A worker handling one user's messages in parallel: every task gets the one new
    # session, on every backend (on SQL and Redis each task created its own).
    async with spec.open() as make_store:
        manager = SessionManagerImpl(await make_store(), {})
        context = SessionContext(manager)

        async def job() -> str:
            return (await context.get_or_create("dana")).session_id

        found = await asyncio.gather(*(asyncio.create_task(job()) for _ in range(10)))
        stored = (await manager.list_sessions("dana")).items
        assert len(stored) == 1
        assert set(found) == {stored[0].session_id}


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name, marks=s.marks) for s in _RACE_SPECS])
async def test_get_or_create_outside_a_request_replaces_a_session_that_ended_elsewhere(
    spec: BackendSpec,
) -> None:
    """A worker's bound session closed (or expired) elsewhere was handed out again, and
    every write through the context then failed."""
    async with spec.open() as make_store:
        manager = SessionManagerImpl(await make_store(), {})
        context = SessionContext(manager)
        first = await context.get_or_create("erin")
        assert (await context.get_or_create("erin")).session_id == first.session_id
        await manager.suspend(first.session_id)  # a suspended one takes no turns either
        suspended = await context.get_or_create("erin")
        assert suspended.session_id != first.session_id
        assert suspended.status == SessionStatus.ACTIVE
        await manager.close(suspended.session_id)
        second = await context.get_or_create("erin")
        assert second.session_id not in (first.session_id, suspended.session_id)
        assert second.status == SessionStatus.ACTIVE
        await context.add_message("user", "job 2")
        header = await manager.get_header(second.session_id)
        assert header is not None and header.turn_count == 1


async def test_get_or_create_from_a_hook_of_its_own_create_does_not_wait_on_itself() -> None:
    # A session_started hook greeting the user through the context: the look-up that
    # created the session holds the user's turn, and the hook ran inside it (it hung).
    from lexigram.hooks import HookRegistry

    from lexigram.ai.session.hooks import HOOK_SESSION_STARTED

    hooks = HookRegistry("test-goc-reentrant")
    manager = SessionManagerImpl(InMemorySessionStore(), {}, hooks=hooks)
    context = SessionContext(manager)

    async def greet(*, payload: object, **_: object) -> None:
        state = await context.get_or_create("erin")
        await manager.add_message(state.session_id, "assistant", "Welcome!")

    hooks.register_action(HOOK_SESSION_STARTED, greet)
    state = await asyncio.wait_for(asyncio.create_task(context.get_or_create("erin")), 5)
    assert [t.content for t in await manager.get_turns(state.session_id)] == ["Welcome!"]
    assert len((await manager.list_sessions("erin")).items) == 1


async def test_a_task_started_inside_a_create_takes_turns_once_the_create_has_ended() -> None:
    # A session_started hook starting a background worker: the worker's context copied
    # the "inside the create" mark and skipped the turn-taking for good (10 parallel
    # look-ups of that worker made 10 sessions on SQL).
    from lexigram.hooks import HookRegistry

    from lexigram.ai.session.hooks import HOOK_SESSION_STARTED

    hooks = HookRegistry("test-goc-background")
    store = _SlowListing()
    manager = SessionManagerImpl(store, {}, hooks=hooks)
    context = SessionContext(manager)
    started = asyncio.Event()
    go = asyncio.Event()
    found: list[str] = []

    async def worker() -> None:
        started.set()
        await go.wait()  # runs on after the create that started it has ended
        for old in (await manager.list_sessions("finn")).items:
            await manager.delete(old.session_id)
        results = await asyncio.gather(
            *(asyncio.create_task(context.get_or_create("finn")) for _ in range(5))
        )
        found.extend(s.session_id for s in results)

    background: list[asyncio.Task[None]] = []

    async def on_started(*, payload: object, **_: object) -> None:
        if not background:
            background.append(asyncio.create_task(worker()))

    hooks.register_action(HOOK_SESSION_STARTED, on_started)
    await asyncio.create_task(context.get_or_create("finn"))
    await started.wait()
    go.set()
    await asyncio.wait_for(background[0], 5)
    assert len(set(found)) == 1
    assert len((await manager.list_sessions("finn")).items) == 1


class _SlowListing(InMemorySessionStore):
    """The in-memory store with a pause in each listing, as a server round trip makes."""

    async def list_user_sessions(self, *args: object, **kwargs: object) -> object:
        page = await super().list_user_sessions(*args, **kwargs)  # type: ignore[arg-type]
        await asyncio.sleep(0.01)  # the answer travels back: others run meanwhile
        return page
