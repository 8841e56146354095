"""``GroupSession``: several agents take turns in one persisted session.

A run appends the opening message as a user turn, then asks the turn manager who
speaks, calls that agent with the turns it may see (through :class:`RoleIsolation`),
and appends its reply as an assistant turn, until a termination condition, the round
budget, an agent failure or the session's turn cap ends it. Every turn carries the
group's turn-taking state (see :mod:`.turn_state`) in the same atomic append, so a run
interrupted by a crash continues with ``run(..., resume=True)`` on any backend.

Before each step the run reads the session's header and the turns stored after the
newest one it has read (``load_record``, then ``get_turn_seqs(after_seq=...)``), so
turns others append meanwhile (a person, another group) reach the agents in stored
order, as a resumed run would show them, and the budgets and the turn cap judge the
session's totals as that header has them.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from lexigram.contracts.ai.llm import LLMClientProtocol
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn
from lexigram.logging import get_logger
from lexigram.result import Result

from lexigram.ai.session.exceptions import (
    DuplicateTurnError,
    SessionCapacityError,
    SessionNotFoundError,
    SessionValidationError,
    TurnLimitReachedError,
)
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.multi_agent._checks import (
    require_int,
    require_name,
    require_positive_number,
)
from lexigram.ai.session.multi_agent.agent import (
    AgentReply,
    GroupAgent,
    GroupMember,
    check_agent,
    reply_from_value,
)
from lexigram.ai.session.multi_agent.isolation import RoleIsolation
from lexigram.ai.session.multi_agent.strategy import build_turn_manager
from lexigram.ai.session.multi_agent.termination import (
    MaxRoundsTermination,
    TerminationCondition,
    TerminationContext,
)
from lexigram.ai.session.multi_agent.turn_managers import TurnContext, TurnManager
from lexigram.ai.session.multi_agent.turn_state import GROUP_KEY, GroupTurnState, RunStatus
from lexigram.ai.session.stores._common import check_append
from lexigram.ai.session.validation import check_id, escape_surrogates

__all__ = ["DEFAULT_MAX_ROUNDS", "GroupSession"]

logger = get_logger(__name__)

DEFAULT_MAX_ROUNDS = 10
"""Round budget of a new run when ``max_rounds`` is not given."""


class _TakenOver(Exception):
    """Another process recorded this run position first; this run stops."""


@dataclass
class _Run:
    """The mutable bookkeeping of one run in progress."""

    session_id: str
    header: SessionState
    history: list[SessionTurn]
    state: GroupTurnState
    termination: TerminationCondition
    seen_seq: int
    """The ``seq`` of the newest stored turn the run has read (its store's numbering)."""
    pending: list[str] = field(default_factory=list)
    """Ids of the turns the run appended since it last read (their ``seq`` is unknown)."""
    views: dict[str, tuple[GroupMember, list[SessionTurn]]] = field(default_factory=dict)
    """Per agent: the member and the turns of ``history`` it may see, kept up to date."""


class GroupSession:
    """Several agents conversing in one session, one turn at a time.

    ``turn_manager`` defaults to the config's ``default_turn_strategy`` (``llm`` is
    needed for ``llm_directed``); ``role_isolation`` to :class:`RoleIsolation`. The
    group holds at most ``config.max_agents_per_group`` agents. ``termination`` is
    checked after every agent turn, besides the round budget of each run.
    ``history_limit`` caps how many stored turns a run loads for its agents (all by
    default); ``agent_timeout`` (seconds) turns a slow agent into a failure.
    """

    def __init__(
        self,
        session_manager: SessionManagerAPI,
        turn_manager: TurnManager | None = None,
        role_isolation: RoleIsolation | None = None,
        *,
        termination: TerminationCondition | None = None,
        llm: LLMClientProtocol | None = None,
        history_limit: int | None = None,
        agent_timeout: float | None = None,
    ) -> None:
        for attr in ("add_turns", "get_turns", "get_header", "get_state", "config", "store"):
            if not hasattr(session_manager, attr):
                raise SessionValidationError(
                    "session_manager",
                    f"expected a SessionManagerAPI, got {type(session_manager).__name__} "
                    f"(it has no {attr!r})",
                )
        self.manager = session_manager
        self.config = session_manager.config
        if turn_manager is None:
            turn_manager = build_turn_manager(self.config.default_turn_strategy, llm=llm)
        elif not callable(getattr(turn_manager, "select_next", None)):
            raise SessionValidationError(
                "turn_manager", f"expected a TurnManager, got {type(turn_manager).__name__}"
            )
        if role_isolation is not None and not isinstance(role_isolation, RoleIsolation):
            raise SessionValidationError(
                "role_isolation", f"expected a RoleIsolation, got {type(role_isolation).__name__}"
            )
        if termination is not None and not isinstance(termination, TerminationCondition):
            raise SessionValidationError(
                "termination", f"expected a TerminationCondition, got {type(termination).__name__}"
            )
        if history_limit is not None:
            require_int("history_limit", history_limit, 1)
        if agent_timeout is not None:
            require_positive_number("agent_timeout", agent_timeout)
        self.turn_manager: TurnManager = turn_manager
        self.role_isolation = role_isolation or RoleIsolation()
        self.termination = termination
        self.history_limit = history_limit
        self.agent_timeout = agent_timeout
        self._members: dict[str, GroupMember] = {}

    # ---------------------------------------------------------------- roster
    @property
    def max_agents(self) -> int:
        """How many agents the group may hold (``max_agents_per_group``)."""
        return self.config.max_agents_per_group

    @property
    def agent_names(self) -> list[str]:
        """Names of the members, in the order they joined."""
        return list(self._members)

    @property
    def members(self) -> tuple[GroupMember, ...]:
        """The members, in the order they joined."""
        return tuple(self._members.values())

    def add_agent(
        self,
        agent: GroupAgent,
        role: str = "participant",
        *,
        priority: int = 0,
        topics: Iterable[str] = (),
    ) -> GroupMember:
        """Add ``agent``; raises ``SessionCapacityError`` past ``max_agents_per_group``.

        ``priority`` orders :class:`PriorityTurnManager` (higher first); ``topics``
        are keywords :class:`TopicBasedTurnManager` routes to this agent.
        """
        name = check_agent(agent)
        if name in self._members:
            raise SessionValidationError(
                "agent.name", f"an agent named {name!r} is already in the group"
            )
        require_name("role", role)
        check_id(role, "role")  # matched against visible_to / hidden_from like a name
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise SessionValidationError("priority", f"must be an integer, got {priority!r}")
        if isinstance(topics, str) or not isinstance(topics, Iterable):
            raise SessionValidationError("topics", f"expected a list of keywords, got {topics!r}")
        topic_list = tuple(topics)
        for topic in topic_list:
            require_name("topics", topic)
        if len(self._members) >= self.max_agents:
            raise SessionCapacityError(
                f"the group already has max_agents_per_group={self.max_agents} agents; "
                f"cannot add {name!r}"
            )
        member = GroupMember(
            agent=agent, role=role, priority=priority, topics=tuple(t.strip() for t in topic_list)
        )
        self._members[name] = member
        return member

    def remove_agent(self, name: str) -> bool:
        """Remove the agent called ``name``; False when there is none."""
        return self._members.pop(name, None) is not None

    # ------------------------------------------------------------------- run
    async def run(
        self,
        session_id: str,
        initial_message: str | None = None,
        *,
        max_rounds: int | None = None,
        resume: bool = False,
    ) -> SessionState:
        """Run the conversation to its end and return the session's final state.

        See :meth:`stream`; the reason the run ended is in the last turn's
        ``metadata["group"]["reason"]`` (also :meth:`run_state`).
        """
        async for _ in self.stream(
            session_id, initial_message, max_rounds=max_rounds, resume=resume
        ):
            pass
        state = await self.manager.get_state(session_id)
        if state is None:
            raise SessionNotFoundError(session_id)
        return state

    async def stream(
        self,
        session_id: str,
        initial_message: str | None = None,
        *,
        max_rounds: int | None = None,
        resume: bool = False,
    ) -> AsyncIterator[SessionTurn]:
        """Run the conversation, yielding each turn once it is stored.

        A new run appends ``initial_message`` as a user turn and lasts at most
        ``max_rounds`` rounds (default 10; a round is as many agent turns as the
        group has agents). With ``resume=True`` and an unfinished run as the newest
        turn of the session, that run continues where it stopped (with its own round
        budget unless ``max_rounds`` is given) and ``initial_message`` is ignored; if
        the newest turn ended a run, nothing happens (also when the session is closed,
        by that run's turn cap or since), nor when the session is at its turn cap
        (every run on it has ended); otherwise a new run starts. Turns others add that
        fill the session during a run end it, finished, without raising.
        """
        require_name("session_id", session_id)
        if max_rounds is not None:
            require_int("max_rounds", max_rounds, 1)
        if not self._members:
            raise SessionValidationError(
                "agents", "the group has no agents; call add_agent() first"
            )
        header = await self.manager.get_header(session_id)
        if header is None:
            raise SessionNotFoundError(session_id)
        previous = await self._last_state(session_id) if resume else None
        if previous is not None and previous.status != "running":
            # The newest turn ended a run: nothing to do, also when that run ended the
            # session (the turn cap) or the session was closed since.
            return
        if resume and header.turn_count >= self.config.max_turns_per_session:
            # A session at its turn cap: every run on it has ended, finished (turns
            # others added may have filled it, or a run's own reply did while its turn
            # still says "running"). Nothing to do, as for a run that ended it.
            return
        _require_writable(header, self.config.max_turns_per_session)
        if previous is not None and previous.running:
            run = await self._resume(header, previous, max_rounds)
        else:
            if not isinstance(initial_message, str):
                raise SessionValidationError(
                    "initial_message",
                    f"a new run needs the opening message as a string, got {initial_message!r}",
                )
            run, opening = await self._open(
                header, initial_message, max_rounds or DEFAULT_MAX_ROUNDS
            )
            yield opening
        while run.state.running and run.header.status == SessionStatus.ACTIVE:
            try:
                turn = await self._step(run)
            except _TakenOver:
                return
            except TurnLimitReachedError:
                # Turns others added filled the session: before the step (its read) or
                # during it (the store refused the reply). The run ends, finished, with
                # no turn of its own (the session takes none).
                cap = self.config.max_turns_per_session
                run.state = _ended(run.state, "finished", _cap_reason(cap))
                return
            yield turn
            if run.state.running and run.header.turn_count >= self.config.max_turns_per_session:
                # The reply filled the session (turns others added during the agent's
                # step): stored as "running", but the run ends there, finished.
                cap = self.config.max_turns_per_session
                run.state = _ended(run.state, "finished", _cap_reason(cap))
                return

    async def run_state(self, session_id: str) -> GroupTurnState | None:
        """The turn-taking state of the session's newest turn (None: not a group turn).

        A running state on a session at ``max_turns_per_session`` is given as finished
        with the cap's reason: that run's reply filled the session (turns others added
        during its step), and no run can go on there.
        """
        state = await self._last_state(session_id)
        if state is not None and state.running:
            header = await self.manager.get_header(session_id)
            cap = self.config.max_turns_per_session
            if header is not None and header.turn_count >= cap:
                return _ended(state, "finished", _cap_reason(cap))
        return state

    # ------------------------------------------------------------- internals
    async def _last_state(self, session_id: str) -> GroupTurnState | None:
        last = await self.manager.get_turns(session_id, last=1)
        return GroupTurnState.from_turn(last[0]) if last else None

    async def _load_history(self, session_id: str) -> tuple[SessionState, int, list[SessionTurn]]:
        """The header, the ``seq`` of its newest turn, and the turns the run starts with.

        The header is read first: turns appended between the two reads are in the
        history and come again in the first :meth:`_catch_up`, which keeps one copy.
        """
        record = await self.manager.store.load_record(session_id)
        if record is None:
            raise SessionNotFoundError(session_id)
        history = await self.manager.get_turns(session_id, last=self.history_limit)
        return record.state, record.last_seq, history

    def _termination(self, max_rounds: int) -> TerminationCondition:
        budget = MaxRoundsTermination(max_rounds)
        return budget if self.termination is None else self.termination | budget

    async def _resume(
        self, header: SessionState, previous: GroupTurnState, max_rounds: int | None
    ) -> _Run:
        if previous.next_speaker not in self._members:
            raise SessionValidationError(
                "roster",
                f"cannot resume session {header.session_id!r}: the next speaker "
                f"{previous.next_speaker!r} is not in the group (members: {self.agent_names})",
            )
        header, seen_seq, history = await self._load_history(header.session_id)
        self._check_visibility(history)
        rounds = max_rounds or previous.max_rounds
        logger.debug(
            "ai_session.group.resumed",
            session_id=header.session_id,
            run_id=previous.run_id,
            round=previous.round,
            next_speaker=previous.next_speaker,
        )
        return _Run(
            session_id=header.session_id,
            header=header,
            history=history,
            state=replace(previous, max_rounds=rounds),
            termination=self._termination(rounds),
            seen_seq=seen_seq,
        )

    async def _open(
        self, header: SessionState, message: str, max_rounds: int
    ) -> tuple[_Run, SessionTurn]:
        session_id = header.session_id
        header, seen_seq, history = await self._load_history(session_id)
        self._check_visibility(history)
        turn = _turn("user", message)
        state = GroupTurnState(
            run_id=uuid.uuid4().hex,
            round=0,
            step=0,
            speaker=None,
            next_speaker=None,
            roster=tuple(self._members),
            spoken=(),
            max_rounds=max_rounds,
        )
        run = _Run(session_id, header, history, state, self._termination(max_rounds), seen_seq)
        cap = self.config.max_turns_per_session
        if header.turn_count + 1 >= cap:  # the opening turn closes the session
            state = _ended(state, "finished", _cap_reason(cap))
        else:
            state = await self._plan_next(run, turn, state, speaker=None)
        return run, await self._record(run, turn, state)

    async def _step(self, run: _Run) -> SessionTurn:
        speaker = run.state.next_speaker
        assert speaker is not None  # guaranteed by run.state.running
        member = self._members.get(speaker)
        round_, step = run.state.next_position(len(self._members))
        spoken = run.state.spoken if speaker in run.state.spoken else (*run.state.spoken, speaker)
        base = replace(
            run.state,
            round=round_,
            step=step,
            speaker=speaker,
            roster=tuple(self._members),
            spoken=spoken,
        )
        try:
            await self._catch_up(run)
        except SessionValidationError as exc:
            # A turn appended during the run with visibility metadata no agent can be
            # judged by: the run ends with the reason (a new run would refuse to start).
            where = exc.field.split("].", 1)[-1] if exc.field else ""
            why = f"a turn added during the run cannot be shown to the agents: {exc.problem}"
            return await self._abort(run, base, f"{why} ({where})" if where else why)
        if member is None:
            return await self._fail(run, base, speaker, None, "left the group before its turn")
        visible = self._visible(run, member)
        message = visible[-1].content if visible else ""
        reply, error = await self._invoke(member, message, visible[:-1])
        if reply is None:
            return await self._fail(run, base, speaker, member.role, error or "no reply")
        metadata = {**reply.metadata, "agent": speaker, "agent_role": member.role, "round": round_}
        turn = _turn(
            "assistant",
            reply.content,
            metadata=metadata,
            tokens_used=reply.tokens_used,
            cost=float(reply.cost),
            model=reply.model,
            provider=reply.provider,
        )
        try:
            reason = self._stop_reason(run, turn, base)
        except Exception as exc:
            state = _ended(base, "failed", f"termination condition failed: {_describe(exc)}")
        else:
            if reason is not None:
                state = _ended(base, "finished", reason)
            else:
                state = await self._plan_next(run, turn, base, speaker=speaker)
        try:
            return await self._record(run, turn, state)
        except SessionValidationError as exc:
            # A reply the store refuses (a value it cannot hold, totals past their
            # limit) fails the agent like any malformed reply; nothing was stored.
            field = exc.field.replace("turns[0].", "reply.", 1)
            error = f"its reply cannot be stored: {field}: {exc.problem}"
            return await self._fail(run, base, speaker, member.role, error)

    def _stop_reason(self, run: _Run, turn: SessionTurn, state: GroupTurnState) -> str | None:
        context = TerminationContext(
            turn=turn,
            speaker=state.speaker or "",
            round=state.round,
            step=state.step,
            roster_size=len(self._members),
            spoken=frozenset(state.spoken),
            total_tokens=run.header.total_tokens + turn.tokens_used,
            total_cost=run.header.total_cost + turn.cost,
        )
        reason = run.termination.check(context)
        cap = self.config.max_turns_per_session
        if reason is None and run.header.turn_count + 1 >= cap:
            reason = _cap_reason(cap)
        return reason

    async def _plan_next(
        self, run: _Run, turn: SessionTurn, state: GroupTurnState, *, speaker: str | None
    ) -> GroupTurnState:
        """``state`` with the next speaker chosen; a failed choice ends the run."""
        round_, step = state.next_position(len(self._members))
        context = TurnContext(
            session_id=run.session_id,
            roster=self.members,
            turns=[*run.history, turn],
            last_speaker=speaker,
            round=round_,
            step=step,
        )
        try:
            chosen = await self.turn_manager.select_next(context)
        except Exception as exc:
            logger.warning(
                "ai_session.group.turn_manager_failed", session_id=run.session_id, error=str(exc)
            )
            return _ended(state, "failed", f"turn manager failed: {_describe(exc)}")
        if chosen is None:
            return _ended(state, "finished", "the turn manager ended the conversation")
        if chosen not in self._members:
            return _ended(
                state, "failed", f"turn manager chose {chosen!r}, who is not in the group"
            )
        return replace(state, next_speaker=chosen, status="running", reason=None)

    async def _catch_up(self, run: _Run) -> None:
        """Read the session's header and merge the turns stored after ``run.seen_seq``.

        Two reads: the header (``load_record``), then the turns past ``seen_seq`` up to
        the header's newest ``seq``, so the header counts exactly the turns the run now
        holds (a turn stored between the reads waits for the next step). The header
        replaces the run's: the budgets and the turn cap judge the session's totals
        as a resumed run would, whatever was appended or removed meanwhile. A session
        that can take no more turns is refused here, before the agent is called, with
        the error an append would raise (``TurnLimitReachedError`` at the turn cap).

        The read returns the run's own turns appended since the last read too, in their
        stored place: an append racing another writer's lands where the store put it.
        The history's tail past ``seen_seq`` (those own turns, and turns the start-up
        load read past its header) is replaced by what the read returned, so no turn
        is held twice; an own turn removed before the run read it back (``pop_turn``,
        ``clear_turns``, a restore) is kept, before the turns read, as a removed turn
        the run has read is kept.
        """
        record = await self.manager.store.load_record(run.session_id)
        if record is None:
            raise SessionNotFoundError(run.session_id)
        rows = await self.manager.store.get_turn_seqs(run.session_id, after_seq=run.seen_seq)
        rows = [(seq, turn) for seq, turn in rows if seq <= record.last_seq]
        new = [turn for _, turn in rows]
        own = set(run.pending)
        ids = {turn.turn_id for turn in new}
        cut = len(run.history) - min(len(run.pending), len(run.history))
        while cut > 0 and run.history[cut - 1].turn_id in ids:
            cut -= 1
        replaced = run.history[cut:]
        removed = [t for t in replaced if t.turn_id in own and t.turn_id not in ids]
        tail = [*removed, *new]
        if [t.turn_id for t in replaced] != [t.turn_id for t in tail]:  # others wrote
            self._check_visibility(new)
            for member, view in run.views.values():
                # RoleIsolation judges each turn on its own: the view's tail is what
                # it showed of the replaced turns.
                gone = len(self.role_isolation.filter_for_agent(replaced, member))
                if gone:
                    del view[-gone:]
                view.extend(self.role_isolation.filter_for_agent(tail, member))
            run.history[cut:] = tail
            if self.history_limit is not None and len(run.history) > self.history_limit:
                del run.history[: len(run.history) - self.history_limit]
        run.header = record.state
        if rows:
            run.seen_seq = rows[-1][0]
        run.pending.clear()
        _require_writable(run.header, self.config.max_turns_per_session)

    def _check_visibility(self, history: list[SessionTurn]) -> None:
        """Refuse a history whose visibility metadata is malformed before anything is
        stored: a run that stored its opening turn and then failed on it stayed
        "running" with no reason, and every later run did the same."""
        for member in self._members.values():
            try:
                self.role_isolation.filter_for_agent(history, member)
            except SessionValidationError as exc:
                where = exc.field or ""
                index = where[len("turns[") : where.find("]")] if where.startswith("turns[") else ""
                at = int(index) if index.isdecimal() else len(history)
                named = f"turn {history[at].turn_id!r}: " if at < len(history) else ""
                raise SessionValidationError(where, f"{named}{exc.problem}") from None

    def _visible(self, run: _Run, member: GroupMember) -> list[SessionTurn]:
        """The turns of the run's history ``member`` may see (kept per agent, see _record)."""
        if self.history_limit is not None:  # a short window: filter it afresh
            return self.role_isolation.filter_for_agent(run.history, member)
        cached = run.views.get(member.name)
        if cached is None or cached[0] is not member:
            cached = (member, self.role_isolation.filter_for_agent(run.history, member))
            run.views[member.name] = cached
        return cached[1]

    async def _invoke(
        self, member: GroupMember, message: str, history: list[SessionTurn]
    ) -> tuple[AgentReply | None, str | None]:
        """Call the agent; (reply, None) on ``Ok``, (None, reason) on anything else."""
        window: asyncio.Timeout | None = None
        try:
            outcome: Any = member.agent.execute(message=message, history=history)
            if inspect.isawaitable(outcome):
                if self.agent_timeout is None:
                    outcome = await outcome
                else:
                    async with asyncio.timeout(self.agent_timeout) as window:
                        outcome = await outcome
        except TimeoutError as exc:
            if window is not None and window.expired():
                return None, f"timed out after {self.agent_timeout:g}s"
            # The agent's own TimeoutError (its LLM or HTTP call), not agent_timeout.
            return None, f"raised {_describe(exc)}"
        except Exception as exc:
            return None, f"raised {_describe(exc)}"
        if not isinstance(outcome, Result):
            return (
                None,
                f"execute() returned {type(outcome).__name__}, expected a lexigram.result Result",
            )
        if outcome.is_err():
            return None, f"returned Err({_describe(outcome.unwrap_err())})"
        try:
            return reply_from_value(outcome.unwrap()), None
        except SessionValidationError as exc:
            return None, str(exc)

    async def _fail(
        self, run: _Run, state: GroupTurnState, speaker: str, role: str | None, error: str
    ) -> SessionTurn:
        error = escape_surrogates(error)
        reason = f"agent {speaker!r} failed: {error}"
        logger.warning(
            "ai_session.group.agent_failed", session_id=run.session_id, agent=speaker, error=error
        )
        metadata: dict[str, Any] = {"agent": speaker, "round": state.round, "error": error}
        if role is not None:
            metadata["agent_role"] = role
        turn = _turn("system", reason, metadata=metadata)
        return await self._record(run, turn, _ended(state, "failed", reason))

    async def _abort(self, run: _Run, state: GroupTurnState, reason: str) -> SessionTurn:
        """End the run as failed for a reason that is no agent's."""
        reason = escape_surrogates(reason)
        logger.warning("ai_session.group.run_failed", session_id=run.session_id, error=reason)
        turn = _turn("system", reason, metadata={"round": state.round, "error": reason})
        return await self._record(run, turn, _ended(state, "failed", reason))

    async def _record(self, run: _Run, turn: SessionTurn, state: GroupTurnState) -> SessionTurn:
        """Append ``turn`` with ``state`` in its metadata, under the position's turn id.

        The id is derived from (run, round, step): if two processes resume the same run,
        the store refuses the second turn for a position and that process stops.
        """
        stored = replace(
            turn,
            turn_id=f"{state.run_id}.{state.round}.{state.step}",
            metadata={**turn.metadata, GROUP_KEY: state.to_metadata()},
        )
        try:
            run.header = await self.manager.add_turns(run.session_id, [stored])
        except DuplicateTurnError:
            logger.warning(
                "ai_session.group.run_taken_over",
                session_id=run.session_id,
                run_id=state.run_id,
                round=state.round,
                step=state.step,
            )
            run.state = _ended(state, "failed", "another process continued this run")
            raise _TakenOver from None
        run.pending.append(stored.turn_id)
        run.history.append(stored)
        if self.history_limit is not None and len(run.history) > self.history_limit:
            del run.history[: len(run.history) - self.history_limit]
        for member, view in run.views.values():
            # RoleIsolation judges each turn on its own, so one new turn extends a view.
            view.extend(self.role_isolation.filter_for_agent([stored], member))
        run.state = state
        return stored


def _turn(
    role: str, content: str, *, metadata: dict[str, Any] | None = None, **fields: Any
) -> SessionTurn:
    return SessionTurn(
        turn_id="",  # set by GroupSession._record from the run position
        role=role,
        content=content,
        timestamp=datetime.now(UTC),
        metadata=dict(metadata or {}),
        **fields,
    )


def _ended(state: GroupTurnState, status: RunStatus, reason: str) -> GroupTurnState:
    return replace(state, next_speaker=None, status=status, reason=reason)


def _describe(error: Any) -> str:
    if isinstance(error, BaseException):
        text = str(error)
        described = f"{type(error).__name__}: {text}" if text else type(error).__name__
        return escape_surrogates(described)
    return escape_surrogates(str(error))


def _cap_reason(cap: int) -> str:
    return f"session reached max_turns_per_session ({cap})"


def _require_writable(header: SessionState, max_turns: int) -> None:
    """Refuse to start on a session that cannot take another turn (same errors as a write)."""
    check_append(header.session_id, header.status, header.turn_count, 1, max_turns)
