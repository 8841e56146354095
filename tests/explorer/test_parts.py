"""The explorer's parts on their own: escaping, settings, charts, the branch family."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.branching import BranchManager, SelectiveMerge
from lexigram.ai.session.exceptions import SessionNotFoundError, SessionValidationError
from lexigram.ai.session.explorer import ExplorerSettings
from lexigram.ai.session.explorer.html import Markup, el, join, url
from lexigram.ai.session.explorer.series import MAX_POINTS, summarize
from lexigram.ai.session.explorer.settings import is_loopback_address
from lexigram.ai.session.explorer.svg import bar_chart, line_chart, nice_ceiling
from lexigram.ai.session.explorer.tree import load_tree
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from tests.explorer.seed import CONFIG

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_text_and_attributes_are_escaped_unless_markup() -> None:
    built = el("a", {"href": 'x" onclick="y', "class_": "c", "hidden": True, "title": None},
               "<b>&", Markup("<i>ok</i>"), 3, None)
    assert built == ('<a href="x&quot; onclick=&quot;y" class="c" hidden>'
                     "&lt;b&gt;&amp;<i>ok</i>3</a>")
    assert el("input", {"value": "<"}) == '<input value="&lt;">'
    assert el("rect", {"x": 1}) == '<rect x="1"/>'
    assert join(["<", Markup("<br>"), ["&", None]]) == "&lt;<br>&amp;"
    assert url("/s", id="a b&c/d", after=None, pos="") == "/s?id=a+b%26c%2Fd"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("::ffff:127.0.0.1", True), ("0.0.0.0", False), ("::", False),
     ("192.0.2.1", False), ("example.com", False), ("", False), (None, False)],
)
def test_loopback_addresses(host: str | None, loopback: bool) -> None:
    assert is_loopback_address(host) is loopback


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("port", {"port": 0}), ("port", {"port": 70000}), ("port", {"port": True}),
     ("host", {"host": " "}), ("page_size", {"page_size": 0}),
     ("turns_per_page", {"turns_per_page": 10_000})],
)
def test_settings_refuse_bad_values_naming_the_field(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(SessionValidationError) as caught:
        ExplorerSettings(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 1.0), (1, 1.0), (7, 10.0), (11, 20.0), (243, 250.0), (0.0123, 0.02),
     (0.0213, 0.025), (5000, 5000.0)],
)
def test_chart_tops_are_round_numbers(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def _turn(n: int, **kw: object) -> SessionTurn:
    return SessionTurn(turn_id=f"t{n}", role="assistant", content=f"c{n}",
                       timestamp=T0, **kw)  # type: ignore[arg-type]


def test_long_sessions_fold_into_at_most_max_points() -> None:
    turns = [_turn(n, tokens_used=n % 7, cost=0.5, model=("a", "b")[n % 2],
                   metadata={"agent": "x"}) for n in range(10_000)]
    series = summarize(turns)
    assert len(series.buckets) == MAX_POINTS
    assert series.buckets[0].first == 1 and series.buckets[-1].last == 10_000
    assert series.buckets[-1].cumulative_tokens == sum(t.tokens_used for t in turns)
    assert series.tokens == sum(t.tokens_used for t in turns)
    assert series.by_model["a"].turns == series.by_model["b"].turns == 5_000
    assert series.by_agent["x"].cost == pytest.approx(5_000.0)
    chart = line_chart("t", [(float(b.last), float(b.cumulative_tokens))
                             for b in series.buckets], x_label="turn")
    assert f'data-points="{MAX_POINTS}"' in chart
    assert "no data" in line_chart("empty", [], x_label="turn")
    assert 'data-bars="2"' in bar_chart("m", [("a", 2.0), ("<b>", 1.0)])
    assert "<b>" not in bar_chart("m", [("<b>", 1.0)])


@pytest.fixture
async def manager() -> AsyncIterator[SessionManagerImpl]:
    store = InMemorySessionStore()
    await store.initialize()
    yield SessionManagerImpl(store, CONFIG)
    await store.close()


async def test_tree_of_nested_branches_with_a_selective_merge(
    manager: SessionManagerImpl,
) -> None:
    store = manager.store
    branches = BranchManager(store)
    root = await manager.create("u")
    for n in range(3):
        await manager.add_message(root.session_id, "user", f"r{n}")
    cp = await manager.checkpoint(root.session_id)
    await manager.add_message(root.session_id, "user", "r3")
    child = await branches.fork(root.session_id, "child", from_checkpoint=cp.checkpoint_id)
    for n in range(3):
        await manager.add_message(child.session_id, "assistant", f"c{n}")
    child_turns = await store.get_turns(child.session_id)
    picked = [child_turns[3].turn_id, child_turns[5].turn_id]
    await branches.merge(root.session_id, child.session_id, strategy=SelectiveMerge(picked))
    grandchild = await branches.fork(child.session_id, "grandchild")

    tree = await load_tree(store, grandchild.session_id)
    assert tree.root == root.session_id and tree.focus == grandchild.session_id
    assert not tree.truncated
    nodes = tree.nodes
    assert nodes[root.session_id].children == [child.session_id]
    assert nodes[child.session_id].children == [grandchild.session_id]
    assert nodes[child.session_id].fork_point == 3  # forked at the checkpoint's 3 turns
    assert nodes[grandchild.session_id].fork_point == 6
    assert nodes[grandchild.session_id].depth == 2
    merge = nodes[child.session_id].merge
    assert merge is not None and merge.turns == 2
    assert nodes[grandchild.session_id].merge is None
    assert [n.session_id for n in tree.merges] == [child.session_id]


async def test_a_branch_whose_parent_was_deleted_roots_what_is_left(
    manager: SessionManagerImpl,
) -> None:
    branches = BranchManager(manager.store)
    root = await manager.create("u")
    child = await branches.fork(root.session_id, "child")
    await manager.delete(root.session_id)
    tree = await load_tree(manager.store, child.session_id)
    assert tree.root == child.session_id and list(tree.nodes) == [child.session_id]
    with pytest.raises(SessionNotFoundError):
        await load_tree(manager.store, root.session_id)


async def test_a_new_session_under_a_deleted_parents_id_is_not_taken_for_the_root(
    manager: SessionManagerImpl,
) -> None:
    branches = BranchManager(manager.store)
    root = await manager.create("alice")
    child = await branches.fork(root.session_id, "child")
    await manager.delete(root.session_id)
    await manager.create("bob", session_id=root.session_id)
    tree = await load_tree(manager.store, child.session_id)
    assert tree.root == child.session_id and list(tree.nodes) == [child.session_id]
    bobs = await load_tree(manager.store, root.session_id)
    assert list(bobs.nodes) == [root.session_id]


async def test_a_merge_past_the_scan_bound_is_reported_not_hidden(
    manager: SessionManagerImpl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge more turns after the fork than the scan reads showed as no merge, and
    the page did not say a bound was reached (an outside audit)."""
    from lexigram.ai.session.explorer import tree as tree_module

    monkeypatch.setattr(tree_module, "MAX_MERGE_SCAN", 5)
    branches = BranchManager(manager.store)
    near, far = await manager.create("u"), await manager.create("u")
    for parent, gap in ((near, 2), (far, 8)):
        child = await branches.fork(parent.session_id, "child")
        await manager.add_message(child.session_id, "user", "branch turn")
        for i in range(gap):
            await manager.add_message(parent.session_id, "user", f"parent {i}")
        await branches.merge(parent.session_id, child.session_id)
        tree = await load_tree(manager.store, parent.session_id)
        merged = tree.nodes[child.session_id].merge
        assert not tree.truncated  # the family is all there
        if gap < 5:
            assert merged is not None and tree.merge_unknown == []
        else:
            assert merged is None and tree.merge_unknown == [child.session_id]


async def test_series_reads_every_turn_across_pages(manager: SessionManagerImpl) -> None:
    from lexigram.ai.session.explorer.series import CHUNK, load_series

    store = manager.store
    big = await manager.create("u")
    total = 2 * CHUNK + 500
    for start in range(0, total, 500):
        await store.append_turns(big.session_id, [
            _turn(n, tokens_used=n % 11, cost=0.25, model="m") for n in range(start, start + 500)
        ])
    series = await load_series(store, big.session_id)
    state = await store.load(big.session_id)
    assert state is not None
    assert series.turns == total == state.turn_count
    assert series.tokens == state.total_tokens == sum(n % 11 for n in range(total))
    assert series.by_model["m"].cost == pytest.approx(state.total_cost)
    assert series.buckets[-1].last == total and len(series.buckets) <= MAX_POINTS
