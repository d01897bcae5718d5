"""The write ledger: one claim per plan of a launch, shared through files (or Redis), the report
of the last complete write, waiting for a write under way, stale claims taken over."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from smart_app.web.ledger import (
    CLAIM_TTL_S,
    FileLedger,
    RedisLedger,
    WriteLedger,
    WrittenPlan,
    _key,
)

SLOT = ("context-1", "plan-key-1")
DONE = WrittenPlan(
    rows=({"reference": "CarePlan/1", "outcome": "created", "item": "careplan"},),
    earlier=("CarePlan/0",),
    at="2026-11-21T10:30:00-05:00",
)


class FakeRedis:
    """The few redis-py calls the ledger makes, on a dict (expiry ignored)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def set(self, name: str, value: str, *, nx: bool = False, ex: int | None = None) -> bool:
        assert ex is not None and ex >= 1
        if nx and name in self.data:
            return False
        self.data[name] = value.encode()
        return True

    def get(self, name: str) -> bytes | None:
        return self.data.get(name)

    def delete(self, name: str) -> None:
        self.data.pop(name, None)


@pytest.fixture(params=["files", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Each store the ledger runs on."""
    return FileLedger(tmp_path / "writes") if request.param == "files" else RedisLedger(FakeRedis())


def test_a_claim_is_exclusive_until_released(store: Any) -> None:
    token = store.claim("claim:a", ttl_s=60)
    assert token
    assert store.claim("claim:a", ttl_s=60) is None
    assert store.claim("claim:b", ttl_s=60)  # another plan is not held up
    store.release("claim:a", "not-the-token")
    assert store.claim("claim:a", ttl_s=60) is None
    store.release("claim:a", token)
    assert store.claim("claim:a", ttl_s=60)


def test_a_report_is_kept_and_read_back(store: Any) -> None:
    ledger = WriteLedger(store)
    assert ledger.recall(SLOT) is None
    with ledger.turn(SLOT) as turn:
        assert turn.mine and turn.done is None
        turn.remember(DONE)
    assert ledger.recall(SLOT) == DONE
    with ledger.turn(SLOT) as again:
        assert again.done == DONE and not again.mine
    assert ledger.recall(("context-2", SLOT[1])) is None  # another launch's plan is its own


def test_a_post_waits_for_the_write_under_way_and_shows_its_report(store: Any) -> None:
    ledger = WriteLedger(store, wait_s=10)
    holding, seen = threading.Event(), []

    def first() -> None:
        with ledger.turn(SLOT) as turn:
            assert turn.mine
            holding.set()
            time.sleep(0.3)
            turn.remember(DONE)

    writer = threading.Thread(target=first)
    writer.start()
    assert holding.wait(5)
    with ledger.turn(SLOT) as second:
        seen.append((second.done, second.mine))
    writer.join()
    assert seen == [(DONE, False)]


def test_a_failed_write_leaves_the_plan_to_the_next_post(store: Any) -> None:
    ledger = WriteLedger(store)
    with pytest.raises(RuntimeError), ledger.turn(SLOT) as turn:
        assert turn.mine
        raise RuntimeError("the server refused it")
    with ledger.turn(SLOT) as retry:
        assert retry.mine and retry.done is None


def test_a_post_that_waits_too_long_is_told_so(store: Any) -> None:
    ledger = WriteLedger(store, wait_s=0.3)
    token = store.claim("claim:" + _key(SLOT), ttl_s=60)
    assert token
    with ledger.turn(SLOT) as turn:
        assert turn.done is None and not turn.mine


def test_no_slot_is_always_its_own_turn(store: Any) -> None:
    with WriteLedger(store).turn(None) as turn:
        assert turn.mine and turn.done is None
        turn.remember(DONE)  # kept nowhere


def test_a_stale_claim_file_is_taken_over_and_an_expired_report_is_gone(tmp_path: Path) -> None:
    files = FileLedger(tmp_path / "writes")
    assert files.claim("claim:x", ttl_s=60)
    claim = tmp_path / "writes" / "claim-x.claim"
    old = time.time() - CLAIM_TTL_S - 1
    os.utime(claim, (old, old))
    assert files.claim("claim:x", ttl_s=CLAIM_TTL_S)
    files.put("written:y", {"rows": []}, ttl_s=-1)
    assert files.get("written:y") is None
    files.put("written:y", {"rows": []}, ttl_s=60)
    assert files.get("written:y") == {"rows": []}
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "writes").iterdir()} == {0o600}


def test_the_store_keys_name_neither_the_launch_nor_the_plan(tmp_path: Path) -> None:
    ledger = WriteLedger(FileLedger(tmp_path / "writes"))
    with ledger.turn(SLOT) as turn:
        turn.remember(DONE)
    names = " ".join(p.name for p in (tmp_path / "writes").iterdir())
    assert SLOT[0] not in names and SLOT[1] not in names
