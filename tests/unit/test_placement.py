"""Placement of provisioned environments over workers: every environment has one home, the
homes are spread about evenly, and a worker that leaves moves only its own environments."""

from __future__ import annotations

from lamina.cluster.placement import PlacementView, assignment, home, share

WORKERS = ["node-a", "node-b", "node-c", "node-d"]


def test_the_shares_add_up_to_the_count() -> None:
    for count in (1, 2, 7, 100):
        shares = [share(WORKERS, me, "fn", "live", count) for me in WORKERS]
        assert sum(shares) == count
        assert assignment(WORKERS, "fn", "live", count) == {
            me: n for me, n in zip(WORKERS, shares, strict=True) if n
        }


def test_the_shares_are_about_even() -> None:
    shares = [share(WORKERS, me, "fn", "live", 400) for me in WORKERS]
    # 100 each on average; rendezvous hashing keeps every worker well within half of it.
    assert all(50 <= n <= 150 for n in shares), shares


def test_a_worker_that_leaves_moves_only_its_own_environments() -> None:
    before = [home(WORKERS, "fn", "live", index) for index in range(200)]
    survivors = [worker for worker in WORKERS if worker != "node-b"]
    after = [home(survivors, "fn", "live", index) for index in range(200)]
    moved = [index for index in range(200) if before[index] != after[index]]
    assert moved == [index for index in range(200) if before[index] == "node-b"]
    assert moved  # node-b held some to begin with


def test_a_node_that_is_not_a_live_worker_holds_nothing() -> None:
    assert share(WORKERS, "frontend", "fn", "live", 50) == 0
    assert share([], "node-a", "fn", "live", 50) == 0
    assert assignment([], "fn", "live", 50) == {}


def test_every_node_works_out_the_same_placement_whatever_order_it_lists_workers_in() -> None:
    assert assignment(WORKERS, "fn", "1", 30) == assignment(WORKERS[::-1], "fn", "1", 30)


def test_an_environments_home_does_not_depend_on_the_count() -> None:
    # So a node's part of the environments numbered a..b-1 is a difference of two shares.
    for me in WORKERS:
        small, large = share(WORKERS, me, "fn", "live", 10), share(WORKERS, me, "fn", "live", 25)
        in_between = sum(home(WORKERS, "fn", "live", index) == me for index in range(10, 25))
        assert large - small == in_between


def test_configs_are_placed_independently() -> None:
    # Different qualifiers and functions hash differently: a one-environment config does not
    # land on the same worker every time.
    homes = {home(WORKERS, f"fn{n}", "live", 0) for n in range(40)}
    assert len(homes) > 1


def test_the_view_follows_the_live_workers_and_keeps_the_last_one_when_it_empties() -> None:
    live = list(WORKERS)
    version = [3]
    view = PlacementView("node-a", lambda: live, lambda: version[0])
    assert (view.version(), view.ids()) == (3, sorted(WORKERS))
    assert view.share("fn", "live", 40) == share(WORKERS, "node-a", "fn", "live", 40)

    live.remove("node-b")
    version[0] = 4
    survivors = ["node-a", "node-c", "node-d"]
    assert (view.version(), view.ids()) == (4, survivors)

    # The registry is unreachable past the expiry: nobody is seen, not even this node.
    live.clear()
    version[0] = 5
    assert (view.version(), view.ids()) == (4, survivors)
    assert view.share("fn", "live", 40) == share(survivors, "node-a", "fn", "live", 40)

    live.extend(["node-a", "node-b"])
    version[0] = 6
    assert (view.version(), view.ids()) == (6, ["node-a", "node-b"])
