"""The webhook inbox on SQLite and on the real PostgreSQL: dedup, leases, retries, dead-letter, replay, retention."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from store_fixtures import PostgresSpace
from tether.store import Store
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SqliteStore
from tether.webhooks.inbox import Inbox, Incoming
from tether.webhooks.writer import InboxWriter


class Wall:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "tether.db")
    else:
        space: PostgresSpace = request.getfixturevalue("postgres")
        opened = PostgresStore(space.url, max_connections=8)
    yield opened
    opened.close()


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def inbox(store: Store, wall: Wall) -> Inbox:
    return Inbox(store, wall=wall)


def event(event_id: str, integration: str = "stripe", at: float = 1_800_000_000.0) -> Incoming:
    body = f'{{"id": "{event_id}"}}'.encode()
    return Incoming(integration, event_id, "invoice.paid", {"content-type": "application/json"}, body, at)


def test_add_commits_new_events_and_reports_duplicates(inbox: Inbox) -> None:
    assert inbox.add([event("evt_1"), event("evt_2")]) == [True, True]
    assert inbox.add([event("evt_2"), event("evt_3"), event("evt_3")]) == [False, True, False]
    assert inbox.add([event("evt_1", integration="github")]) == [True], "ids are unique per integration"
    assert inbox.counts() == {
        "stripe": {"pending": 3, "processing": 0, "done": 0, "dead": 0},
        "github": {"pending": 1, "processing": 0, "done": 0, "dead": 0},
    }


def test_a_batch_larger_than_one_statement_reports_each_event(inbox: Inbox) -> None:
    already = [event(f"evt_{n}") for n in range(0, 700, 7)]
    assert inbox.add(already) == [True] * len(already)
    batch = [event(f"evt_{n}") for n in range(700)]  # over two statements' worth, some already stored
    assert inbox.add(batch) == [n % 7 != 0 for n in range(700)]
    assert inbox.counts()["stripe"]["pending"] == 700


def test_duplicates_are_told_apart_from_new_events_with_the_same_receipt_time(inbox: Inbox) -> None:
    """Whether an event is new never depends on clocks: the same event re-sent in the same instant is a
    duplicate, and new events in a batch with duplicates are all reported new."""
    assert inbox.add([event("evt_a", at=5.0)]) == [True]
    assert inbox.add([event("evt_b", at=5.0), event("evt_a", at=5.0), event("evt_c", at=5.0)]) == [True, False, True]
    assert inbox.add([event("evt_c", at=4.0), event("evt_d", at=4.0)]) == [False, True]


def test_a_stored_event_keeps_its_raw_body_and_headers(inbox: Inbox) -> None:
    body = b'{"id": "evt_raw",  "amount": 1}\n\xff'
    inbox.add([Incoming("stripe", "evt_raw", None, {"x-a": "1"}, body, 5.0)])
    [stored] = inbox.events()
    found = inbox.get(stored.id)
    assert found is not None
    assert found[1:] == ({"x-a": "1"}, body)
    assert (found[0].status, found[0].received_at, found[0].event_type) == ("pending", 5.0, None)
    assert inbox.get(stored.id + 1000) is None


def test_claim_complete_and_a_lost_lease(inbox: Inbox, wall: Wall) -> None:
    inbox.add([event("evt_1"), event("evt_2"), event("evt_x", integration="other")])
    claimed = inbox.claim("a", ["stripe"], limit=10, lease=30)
    assert [c.event_id for c in claimed] == ["evt_1", "evt_2"]
    assert all(c.attempts == 1 for c in claimed)
    assert inbox.claim("b", ["stripe"], limit=10, lease=30) == [], "leased events are not claimed twice"
    assert inbox.complete(claimed[0].id, "a")
    assert not inbox.complete(claimed[0].id, "a"), "completing twice changes nothing"
    wall.now += 31  # a's lease on evt_2 ran out: a crashed worker
    [again] = inbox.claim("b", ["stripe"], limit=10, lease=30)
    assert (again.event_id, again.attempts) == ("evt_2", 2)
    assert not inbox.complete(again.id, "a"), "the old holder's late completion is refused"
    assert inbox.complete(again.id, "b")
    assert inbox.claim("c", ["stripe"], limit=10, lease=30) == [], "a completed event never runs again"
    assert inbox.counts()["stripe"]["done"] == 2


def test_a_failed_event_waits_for_its_backoff_then_goes_dead(inbox: Inbox, wall: Wall) -> None:
    inbox.add([event("evt_1")])
    [first] = inbox.claim("a", ["stripe"], limit=1, lease=30)
    assert inbox.fail(first.id, "a", "boom", retry_in=60)
    assert inbox.claim("a", ["stripe"], limit=1, lease=30) == []
    wall.now += 61
    [second] = inbox.claim("a", ["stripe"], limit=1, lease=30)
    assert second.attempts == 2
    assert inbox.fail(second.id, "a", "boom again", retry_in=None)
    [dead] = inbox.events(status="dead")
    assert (dead.attempts, dead.last_error, dead.due_at) == (2, "boom again", None)
    wall.now += 10_000
    assert inbox.claim("a", ["stripe"], limit=1, lease=30) == [], "dead events wait for a replay"


def test_replay_by_id_since_and_dead(inbox: Inbox, wall: Wall) -> None:
    inbox.add([event("evt_1", at=100.0), event("evt_2", at=200.0), event("evt_3", at=300.0)])
    claimed = inbox.claim("a", ["stripe"], limit=3, lease=30)
    inbox.complete(claimed[0].id, "a")
    inbox.fail(claimed[1].id, "a", "x", retry_in=None)
    assert inbox.replay(dead=True) == [claimed[1].id]
    assert inbox.replay(ids=[claimed[0].id]) == [claimed[0].id]
    assert inbox.replay(since=250.0) == [], "evt_3 is being processed: left alone"
    inbox.complete(claimed[2].id, "a")
    assert inbox.replay(since=250.0) == [claimed[2].id]
    replayed = inbox.claim("b", ["stripe"], limit=5, lease=30)
    assert sorted(c.event_id for c in replayed) == ["evt_1", "evt_2", "evt_3"]
    assert all(c.attempts == 1 for c in replayed), "a replay starts a fresh attempt count"


def test_release_hands_leases_back_without_spending_an_attempt(inbox: Inbox) -> None:
    inbox.add([event("evt_1"), event("evt_2")])
    claimed = inbox.claim("a", ["stripe"], limit=2, lease=30)
    assert inbox.release("a", [claimed[1].id]) == 1
    [again] = inbox.claim("b", ["stripe"], limit=2, lease=30)
    assert (again.event_id, again.attempts) == ("evt_2", 1)


def test_retention_deletes_only_old_completed_events(inbox: Inbox, wall: Wall) -> None:
    inbox.add([event("evt_old"), event("evt_new"), event("evt_dead")])
    old, new, dead = inbox.claim("a", ["stripe"], limit=3, lease=30)
    inbox.complete(old.id, "a")
    inbox.fail(dead.id, "a", "x", retry_in=None)
    wall.now += 1000
    inbox.complete(new.id, "a")
    assert inbox.purge("stripe", older_than=500) == 1
    assert sorted(e.event_id for e in inbox.events()) == ["evt_dead", "evt_new"]


def test_concurrent_claimers_never_take_the_same_event(inbox: Inbox) -> None:
    total = 400
    for start in range(0, total, 100):
        inbox.add([event(f"evt_{n}") for n in range(start, start + 100)])
    taken: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(holder: str) -> None:
        mine = taken.setdefault(holder, [])
        try:
            while batch := inbox.claim(holder, ["stripe"], limit=7, lease=60):
                mine += [c.id for c in batch]
                for claimed in batch:
                    assert inbox.complete(claimed.id, holder)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    every = [inbox_id for ids in taken.values() for inbox_id in ids]
    assert len(every) == total
    assert len(set(every)) == total, "no event was claimed twice"
    assert inbox.counts()["stripe"]["done"] == total


def test_the_writer_commits_every_accepted_event_before_it_stops(inbox: Inbox) -> None:
    writer = InboxWriter(inbox, max_batch=7)
    writer.start()

    async def send() -> list[bool]:
        firsts = await asyncio.gather(*(writer.accept(event(f"evt_{n}")) for n in range(50)))
        again = await asyncio.gather(*(writer.accept(event(f"evt_{n}")) for n in range(0, 60, 2)))
        return [*firsts, *again]

    answers = asyncio.run(send())
    writer.stop()
    assert answers == [True] * 50 + [n >= 50 for n in range(0, 60, 2)]
    assert writer.events == 80
    assert writer.batches >= 80 // 7, "no batch is larger than max_batch"
    assert inbox.counts()["stripe"]["pending"] == 55
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(writer.accept(event("evt_late")))
