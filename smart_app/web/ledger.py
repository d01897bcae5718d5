"""Plan writes per launch: one at a time for a plan, and the report of the last complete one, so a
second POST of the same plan (a double-click) shows the first one's result instead of writing
again.

Claims and reports are kept beside the server-side sessions, where every worker sees them at
once: files next to the session directory, or the sessions' Redis. Not in the session itself,
which each request reads once at its start (the second POST of a double-click reads it before
the first one saves its own) and which gunicorn's workers do not share while a request runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from smart_app.config import WebSettings
from smart_app.errors import ConfigError

CLAIM_TTL_S = 300.0
"""A claim older than this is a worker that died mid-write: it is taken over."""
WAIT_S = 120.0
"""How long a POST waits for a write of the same plan under way before saying so."""
POLL_S = 0.1
REPORT_TTL_S = 8 * 3600.0
"""As long as a session lasts."""
MAX_FILES = 2000
"""Above this many files the expired ones are removed."""

Slot = tuple[str, str]
"""(launch context id, plan key): one plan of one launch."""


class LedgerStore(Protocol):
    """Claims and reports, shared by every worker of the app."""

    def claim(self, key: str, *, ttl_s: float) -> str | None:
        """Take the claim on `key` (a token to release it), or None when another holds it."""
        ...

    def release(self, key: str, token: str) -> None:
        """Give back a claim taken with `token`."""
        ...

    def get(self, key: str) -> Any:
        """The value kept under `key`, or None."""
        ...

    def put(self, key: str, value: Any, *, ttl_s: float) -> None:
        """Keep a JSON value under `key` for `ttl_s`."""
        ...


@dataclass(frozen=True)
class WrittenPlan:
    """What a complete write of one plan did, for showing it again."""

    rows: tuple[Mapping[str, str], ...]
    """Each resource as report.written_data gives it: reference, outcome, item, detail."""
    earlier: tuple[str, ...]
    """References of an earlier plan's entries the write retired."""
    at: str
    """When it was written (ISO 8601, the app's clock)."""

    def stored(self) -> dict[str, Any]:
        """As kept in the store."""
        return {"rows": [dict(r) for r in self.rows], "earlier": list(self.earlier), "at": self.at}

    @classmethod
    def from_stored(cls, raw: Any) -> WrittenPlan | None:
        """A report as kept in the store; None when it is not one."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("rows"), list):
            return None
        rows = tuple(
            {str(k): str(v) for k, v in row.items()}
            for row in raw["rows"]
            if isinstance(row, Mapping)
        )
        earlier = tuple(str(r) for r in raw.get("earlier") or ())
        return cls(rows=rows, earlier=earlier, at=str(raw.get("at") or ""))


@dataclass
class Turn:
    """A POST's turn at writing a plan: what came of an earlier write, or whether it may write."""

    done: WrittenPlan | None
    """The report of a write of the same plan from this launch that came first."""
    mine: bool
    """True when this POST holds the plan's claim and nothing was written yet: it writes."""
    remember: Callable[[WrittenPlan], None] = field(default=lambda _: None)
    """Keep the report of this POST's complete write."""


class WriteLedger:
    """Whose turn it is to write a plan of a launch, and what its last complete write did."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        wait_s: float = WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.wait_s = wait_s
        self._sleep = sleep
        self._clock = clock

    @contextlib.contextmanager
    def turn(self, slot: Slot | None) -> Iterator[Turn]:
        """This POST's turn at a plan: the report when a write of it already finished (or
        finishes while this one waits for it), else the claim to write it (held until the
        block ends), else after `wait_s` neither. No slot (a plan that cannot be written): its
        turn, nothing held or kept."""
        if slot is None:
            yield Turn(done=None, mine=True)
            return
        key = _key(slot)
        deadline = self._clock() + self.wait_s
        token = None
        while (done := self.recall(slot)) is None:
            token = self.store.claim(f"claim:{key}", ttl_s=CLAIM_TTL_S)
            if token is not None or self._clock() >= deadline:
                break
            self._sleep(POLL_S)
        if token is None:
            yield Turn(done=done, mine=False)
            return
        try:
            done = self.recall(slot)  # finished between the look and the claim
            yield Turn(
                done=done,
                mine=done is None,
                remember=lambda written: self.store.put(
                    f"written:{key}", written.stored(), ttl_s=REPORT_TTL_S
                ),
            )
        finally:
            self.store.release(f"claim:{key}", token)

    def recall(self, slot: Slot) -> WrittenPlan | None:
        """The last complete write of this plan from this launch, or None."""
        return WrittenPlan.from_stored(self.store.get(f"written:{_key(slot)}"))


def _key(slot: Slot) -> str:
    """A store key for a slot that names neither the context id nor the plan key."""
    return hashlib.sha256("\x1f".join(slot).encode()).hexdigest()[:40]


class FileLedger:
    """Claims and reports as files in one directory (the workers of one host)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str, suffix: str) -> Path:
        """The file of a key."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.directory / f"{key.replace(':', '-')}{suffix}"

    def claim(self, key: str, *, ttl_s: float) -> str | None:
        """Create the claim file exclusively; a claim older than `ttl_s` is taken over."""
        path = self._path(key, ".claim")
        token = secrets.token_hex(16)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                try:
                    stale = time.time() - path.stat().st_mtime > ttl_s
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if not stale:
                    return None
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(token)
            return token
        return None

    def release(self, key: str, token: str) -> None:
        """Remove the claim file when it is still this token's."""
        path = self._path(key, ".claim")
        with contextlib.suppress(OSError):
            if path.read_text(encoding="ascii") == token:
                path.unlink()

    def get(self, key: str) -> Any:
        """The value of an unexpired file, or None."""
        try:
            kept = json.loads(self._path(key, ".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(kept, dict) or not kept.get("until", 0) > time.time():
            return None
        return kept.get("value")

    def put(self, key: str, value: Any, *, ttl_s: float) -> None:
        """Write the value atomically (a temporary file renamed over the old one)."""
        path = self._path(key, ".json")
        temporary = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"until": time.time() + ttl_s, "value": value}, out)
        temporary.replace(path)
        self._prune()

    def _prune(self) -> None:
        """Remove expired reports and stale claims once there are many files."""
        paths = list(self.directory.iterdir())
        if len(paths) <= MAX_FILES:
            return
        now = time.time()
        for path in paths:
            with contextlib.suppress(OSError, ValueError):
                if path.suffix == ".json":
                    until = json.loads(path.read_text(encoding="utf-8")).get("until", 0)
                    if until <= now:
                        path.unlink()
                elif now - path.stat().st_mtime > CLAIM_TTL_S:
                    path.unlink()


class RedisLedger:
    """Claims and reports in the sessions' Redis (several hosts)."""

    def __init__(self, client: Any, *, prefix: str = "zolgensma-writes:") -> None:
        self.client = client
        self.prefix = prefix

    def claim(self, key: str, *, ttl_s: float) -> str | None:
        """SET NX with an expiry: the claim is the first writer's until released or expired."""
        token = secrets.token_hex(16)
        taken = self.client.set(self.prefix + key, token, nx=True, ex=max(1, int(ttl_s)))
        return token if taken else None

    def release(self, key: str, token: str) -> None:
        """Delete the claim when it is still this token's."""
        held = self.client.get(self.prefix + key)
        if held is not None and (held.decode() if isinstance(held, bytes) else held) == token:
            self.client.delete(self.prefix + key)

    def get(self, key: str) -> Any:
        """The JSON value under the key, or None."""
        raw = self.client.get(self.prefix + key)
        try:
            return json.loads(raw) if raw is not None else None
        except ValueError:
            return None

    def put(self, key: str, value: Any, *, ttl_s: float) -> None:
        """SET with an expiry."""
        self.client.set(self.prefix + key, json.dumps(value), ex=max(1, int(ttl_s)))


def write_ledger(settings: WebSettings) -> WriteLedger:
    """The ledger beside the sessions: the sessions' Redis, else files next to their directory."""
    if settings.session_redis_url:
        try:
            import redis
        except ImportError:
            raise ConfigError("SMART_APP_SESSION_REDIS_URL needs `pip install redis`") from None
        return WriteLedger(RedisLedger(redis.Redis.from_url(settings.session_redis_url)))
    sessions = settings.session_dir
    return WriteLedger(FileLedger(sessions.parent / f"{sessions.name}-writes"))
