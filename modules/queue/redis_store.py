"""Queue jobs in Redis, so several engine instances (on several machines) share one set of queues.

Same interface, return values and rules as :class:`modules.queue.store.QueueStore` (its docstrings
and SQL are the specification; ``tests/unit/test_queue_store.py`` runs on both). Every change of
state is one Lua script, so it is atomic: two engines claiming from one queue at the same moment
are serialised by Redis and never lease the same job, and no crash can leave a job half moved.

Key layout, every key under ``<prefix>:`` (``P:`` below; one Redis, not a cluster: the scripts
touch keys they compute):

====================================  ===========================================================
``P:job:<id>``                        hash: the job's fields (as the SQL columns) and ``seq``
``P:seq``                             counter: push order, shared by all engines (``INCRBY``)
``P:wait:<queue>``                    zset: every waiting job, score ``available_at``
``P:ready:<queue>``                   zset: waiting jobs with ``available_at`` <= the queue's mark,
                                      score ``seq`` (standard claims take from here in seq order)
``P:fready:<queue>``                  zset: the same, only the head of each message group (FIFO)
``P:mark``                            hash: queue -> the latest ``now`` a claim promoted up to
``P:active:<queue>``                  zset: leased jobs, score ``lease_until``
``P:group:<len(queue)>:<queue>:<g>``  zset: unfinished (waiting or active) jobs of group ``g``,
                                      score ``seq``; its first member is the group's head
``P:jobs:<queue>``                    set: every job of the queue in any state (for ``adopt``)
``P:dead:<display>``                  zset: dead letters, score ``failed_at``, member
                                      ``<seq, 16 digits>:<id>`` (ties in seq order)
``P:owned:<owner>`` / ``P:owners``    set of jobs leased by an owner / set of owners with leases
``P:stats``                           hash: ``<state>:<display>`` -> count (absent when 0)
``P:queues``                          hash: queue -> count of unfinished jobs (absent when 0)
``P:subscribers``                     hash: ``<topic> NUL <queue>`` -> a topic subscription (JSON), for every engine
====================================  ===========================================================

Why ``ready`` and a mark: claims are ordered by ``seq`` among the jobs due *now*, while jobs become
due by ``available_at``. A claim first moves the jobs that fell due since the queue's mark into
``ready`` (each job once), then takes the lowest seqs; a job that is due at or before the mark
when it starts waiting goes straight in. A candidate not yet due at the claim's ``now`` (clocks of
two engines differ a little) is skipped, as the SQL's ``available_at <= now`` would skip it. The
first claim of a queue with a large backlog moves the whole backlog once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from modules.queue.store import Job, StoreError, Subscriber
from modules.redis_listener import Log, RedisListener, RedisUnavailable
from modules.redis_url import redacted
from supervisor.core import jsoncodec

T = TypeVar("T")


@dataclass
class RedisQueueConfig:
    """``adapter: {class: modules::queue::RedisAdapter, config: {...}}``."""

    redis_url: str = "redis://127.0.0.1:6379"
    prefix: str = "iii:queue"


# Shared by every script: ARGV[1] is the key prefix (ending in ':').
_LIB = r"""
local P = ARGV[1]
local function jkey(id) return P .. 'job:' .. id end
local function gkey(q, g) return P .. 'group:' .. #q .. ':' .. q .. ':' .. g end
local function dmember(seq, id) return string.format('%016d', tonumber(seq)) .. ':' .. id end
local function bump(hash, field, by)
  if redis.call('HINCRBY', P .. hash, field, by) <= 0 then redis.call('HDEL', P .. hash, field) end
end
local function due(q, at)
  local mark = redis.call('HGET', P .. 'mark', q)
  return mark and tonumber(at) <= tonumber(mark)
end
local function head(q, g) return redis.call('ZRANGE', gkey(q, g), 0, 0)[1] end
-- the group's head becomes claimable in FIFO order if it is waiting and due
local function offer(q, g)
  local h = head(q, g)
  if h then
    local f = redis.call('HMGET', jkey(h), 'state', 'available_at', 'seq')
    if f[1] == 'waiting' and due(q, f[2]) then redis.call('ZADD', P .. 'fready:' .. q, f[3], h) end
  end
end
-- out of the indexes of its current state; false if there is no such job
local function unlink(id)
  local f = redis.call('HMGET', jkey(id), 'state', 'queue', 'display', 'group_id', 'seq', 'owner')
  local state, q, display, g, seq, owner = f[1], f[2], f[3], f[4], f[5], f[6]
  if not state then return false end
  bump('stats', state .. ':' .. display, -1)
  if state == 'dead' then
    redis.call('ZREM', P .. 'dead:' .. display, dmember(seq, id))
    return true
  end
  if state == 'waiting' then
    redis.call('ZREM', P .. 'wait:' .. q, id)
    redis.call('ZREM', P .. 'ready:' .. q, id)
    redis.call('ZREM', P .. 'fready:' .. q, id)
  else
    redis.call('ZREM', P .. 'active:' .. q, id)
    if owner then
      redis.call('SREM', P .. 'owned:' .. owner, id)
      if redis.call('SCARD', P .. 'owned:' .. owner) == 0 then redis.call('SREM', P .. 'owners', owner) end
    end
  end
  bump('queues', q, -1)
  local was_head = head(q, g) == id
  redis.call('ZREM', gkey(q, g), id)
  if was_head then offer(q, g) end
  return true
end
-- into the indexes of the state its hash now says
local function link(id)
  local f = redis.call('HMGET', jkey(id), 'state', 'queue', 'display', 'group_id', 'seq', 'owner',
                       'available_at', 'lease_until', 'failed_at')
  local state, q, display, g, seq, owner, at, lease, failed = f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
  bump('stats', state .. ':' .. display, 1)
  if state == 'dead' then
    redis.call('ZADD', P .. 'dead:' .. display, failed, dmember(seq, id))
    return
  end
  bump('queues', q, 1)
  local old = head(q, g)
  redis.call('ZADD', gkey(q, g), seq, id)
  if old and old ~= id and head(q, g) == id then redis.call('ZREM', P .. 'fready:' .. q, old) end
  if state == 'waiting' then
    redis.call('ZADD', P .. 'wait:' .. q, at, id)
    if due(q, at) then redis.call('ZADD', P .. 'ready:' .. q, seq, id) end
    offer(q, g)
  else
    redis.call('ZADD', P .. 'active:' .. q, lease, id)
    redis.call('SADD', P .. 'owned:' .. owner, id)
    redis.call('SADD', P .. 'owners', owner)
  end
end
"""

# ARGV: P, n, then per job: id, field count, field, value, ...
_PUSH = r"""
local n, i, jobs, seen, woken = tonumber(ARGV[2]), 3, {}, {}, {}
for k = 1, n do
  local id, nf = ARGV[i], tonumber(ARGV[i + 1])
  if seen[id] or redis.call('EXISTS', jkey(id)) == 1 then
    return redis.error_reply('a message with id ' .. id .. ' is already queued')
  end
  seen[id] = true
  jobs[k] = {id, i + 2, nf}
  i = i + 2 + 2 * nf
end
local first = redis.call('INCRBY', P .. 'seq', n) - n
for k = 1, n do
  local id, at, nf = jobs[k][1], jobs[k][2], jobs[k][3]
  local args = {'HSET', jkey(id), 'seq', string.format('%d', first + k)}
  for x = 0, 2 * nf - 1 do args[#args + 1] = ARGV[at + x] end
  redis.call(unpack(args))
  local queue = redis.call('HGET', jkey(id), 'queue')
  redis.call('SADD', P .. 'jobs:' .. queue, id)
  link(id)
  woken[queue] = true
end
for queue in pairs(woken) do redis.call('PUBLISH', P .. 'wake', queue) end  -- consumers on every engine
return n
"""

# ARGV: P, from, to, function_id, display (only jobs published to that topic move)
_ADOPT = r"""
local from, to = ARGV[2], ARGV[3]
local moved = 0
for _, id in ipairs(redis.call('SMEMBERS', P .. 'jobs:' .. from)) do
  if redis.call('HGET', jkey(id), 'display') == ARGV[5] then
    unlink(id)
    redis.call('HSET', jkey(id), 'queue', to, 'function_id', ARGV[4])
    link(id)
    redis.call('SREM', P .. 'jobs:' .. from, id)
    redis.call('SADD', P .. 'jobs:' .. to, id)
    moved = moved + 1
  end
end
if moved > 0 then redis.call('PUBLISH', P .. 'wake', to) end
return moved
"""

# ARGV: P, queue, now, limit, fifo (1/0), lease_until, owner
_CLAIM = r"""
local q, now, limit, fifo, lease, owner = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6], ARGV[7]
local mark = redis.call('HGET', P .. 'mark', q)
if not mark or tonumber(now) > tonumber(mark) then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wait:' .. q, mark and ('(' .. mark) or '-inf', now)) do
    local f = redis.call('HMGET', jkey(id), 'seq', 'group_id')
    redis.call('ZADD', P .. 'ready:' .. q, f[1], id)
    if head(q, f[2]) == id then redis.call('ZADD', P .. 'fready:' .. q, f[1], id) end
  end
  redis.call('HSET', P .. 'mark', q, now)
end
local source = P .. (fifo and 'fready:' or 'ready:') .. q
local out, skipped, t = {}, 0, tonumber(now)
while #out < limit do
  local ids = redis.call('ZRANGE', source, skipped, skipped + limit - #out - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local key = jkey(id)
    local f = redis.call('HMGET', key, 'available_at', 'display')
    if tonumber(f[1]) <= t then
      redis.call('ZREM', P .. 'wait:' .. q, id)
      redis.call('ZREM', P .. 'ready:' .. q, id)
      redis.call('ZREM', P .. 'fready:' .. q, id)
      bump('stats', 'waiting:' .. f[2], -1)
      bump('stats', 'active:' .. f[2], 1)
      redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('HSET', key, 'state', 'active', 'lease_until', lease, 'owner', owner)
      redis.call('ZADD', P .. 'active:' .. q, lease, id)
      redis.call('SADD', P .. 'owned:' .. owner, id)
      redis.call('SADD', P .. 'owners', owner)
      out[#out + 1] = redis.call('HGETALL', key)
    else
      skipped = skipped + 1
    end
  end
end
return out
"""

# ARGV: P, id, ...
_ACK = r"""
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local q = redis.call('HGET', jkey(id), 'queue')
  if q and unlink(id) then
    redis.call('DEL', jkey(id))
    redis.call('SREM', P .. 'jobs:' .. q, id)
    n = n + 1
  end
end
return n
"""

# ARGV: P, id, state (waiting/dead), at (available_at or failed_at), error, attempt
# only while the job is still in that delivery attempt (see QueueStore.retry)
_SETTLE = r"""
local id = ARGV[2]
local now = redis.call('HMGET', jkey(id), 'state', 'attempts')
if now[1] ~= 'active' or tonumber(now[2]) ~= tonumber(ARGV[6]) then return 0 end
if not unlink(id) then return 0 end
redis.call('HSET', jkey(id), 'state', ARGV[3], ARGV[3] == 'waiting' and 'available_at' or 'failed_at', ARGV[4],
           'last_error', ARGV[5])
redis.call('HDEL', jkey(id), 'lease_until', 'owner')
link(id)
return 1
"""

# ARGV: P, id, until
_EXTEND = r"""
local f = redis.call('HMGET', jkey(ARGV[2]), 'state', 'queue')
if f[1] ~= 'active' then return 0 end
redis.call('HSET', jkey(ARGV[2]), 'lease_until', ARGV[3])
redis.call('ZADD', P .. 'active:' .. f[2], ARGV[3], ARGV[2])
return 1
"""

# ARGV: P, owner, ...
_RELEASE = r"""
local n = 0
for i = 2, #ARGV do
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'owned:' .. ARGV[i])) do
    redis.call('HSET', jkey(id), 'lease_until', '0')
    redis.call('ZADD', P .. 'active:' .. redis.call('HGET', jkey(id), 'queue'), 0, id)
    n = n + 1
  end
end
return n
"""


def _dead_ids(var: str) -> str:
    """Lua: the dead job ids of ``ARGV[2]`` (the display), or only ``ARGV[4]`` if ``ARGV[3]`` is 1."""
    return rf"""
local {var} = {{}}
if ARGV[3] == '1' then
  local f = redis.call('HMGET', jkey(ARGV[4]), 'state', 'display')
  if f[1] == 'dead' and f[2] == ARGV[2] then {var}[1] = ARGV[4] end
else
  for _, m in ipairs(redis.call('ZRANGE', P .. 'dead:' .. ARGV[2], 0, -1)) do {var}[#{var} + 1] = string.sub(m, 18) end
end
"""


# ARGV: P, display, has id (1/0), id, now
_REDRIVE = _dead_ids("ids") + r"""
local queues, seen = {}, {}
for _, id in ipairs(ids) do
  local q = redis.call('HGET', jkey(id), 'queue')
  if not seen[q] then seen[q] = true; queues[#queues + 1] = q end
  unlink(id)
  redis.call('HSET', jkey(id), 'state', 'waiting', 'attempts', '0', 'available_at', ARGV[5])
  redis.call('HDEL', jkey(id), 'failed_at')
  link(id)
end
return queues
"""

# ARGV: P, display, 1, id
_DISCARD = _dead_ids("ids") + r"""
for _, id in ipairs(ids) do
  redis.call('SREM', P .. 'jobs:' .. redis.call('HGET', jkey(id), 'queue'), id)
  unlink(id)
  redis.call('DEL', jkey(id))
end
return #ids
"""

# ARGV: P, queue, now
_EXPIRED = r"""
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'active:' .. ARGV[2], '-inf', '(' .. ARGV[3])) do
  out[#out + 1] = redis.call('HGETALL', jkey(id))
end
return out
"""

# ARGV: P, display, offset, limit
_DEAD = r"""
local out, first = {}, tonumber(ARGV[3])
for _, m in ipairs(redis.call('ZRANGE', P .. 'dead:' .. ARGV[2], first, first + tonumber(ARGV[4]) - 1)) do
  out[#out + 1] = redis.call('HGETALL', jkey(string.sub(m, 18)))
end
return out
"""

# ARGV: P, queue -> the stored available_at of the first waiting job and lease_until of the first active one
_NEXT_DUE = r"""
local out = {}
for i, kind in ipairs({'wait', 'active'}) do
  local id = redis.call('ZRANGE', P .. kind .. ':' .. ARGV[2], 0, 0)[1]
  out[i] = id and redis.call('HGET', jkey(id), kind == 'wait' and 'available_at' or 'lease_until') or ''
end
return out
"""


def _num(value: float) -> str:
    return repr(float(value))


def _opt_float(text: str | None) -> float | None:
    return None if text is None else float(text)


def _job(flat: list[str]) -> Job:
    h = dict(zip(flat[::2], flat[1::2], strict=True))
    error = h.get("last_error")
    return Job(h["id"], h["queue"], h["display"], h.get("function_id"), jsoncodec.loads(h["data"]),
               h.get("group_id", ""), h["state"], int(h["attempts"]), float(h["available_at"]),
               _opt_float(h.get("lease_until")), h.get("owner"), float(h["created_at"]), _opt_float(h.get("failed_at")),
               jsoncodec.loads(error) if error else None, h.get("traceparent"), h.get("baggage"))


def _fields(job: Job) -> list[str]:
    """A new job's hash fields (as ``QueueStore.push`` stores them: waiting, no attempts yet)."""
    fields: dict[str, str | None] = {
        "id": job.id, "queue": job.queue, "display": job.display, "function_id": job.function_id,
        "data": jsoncodec.dumps_str(job.data), "group_id": job.group_id, "state": "waiting", "attempts": "0",
        "available_at": _num(job.available_at), "created_at": _num(job.created_at),
        "traceparent": job.traceparent, "baggage": job.baggage}
    present = [(k, v) for k, v in fields.items() if v is not None]
    return [job.id, str(len(present))] + [x for kv in present for x in kv]


class RedisQueueStore:
    broker_type = "redis"

    def __init__(self, url: str, *, prefix: str = "iii:queue", log: Log | None = None) -> None:
        self.url = url
        self._log: Log = log or (lambda *args, **kwargs: None)
        self._listener: RedisListener | None = None
        self.where = redacted(url)
        self.prefix = prefix if prefix.endswith(":") else prefix + ":"
        self._client = aioredis.from_url(url, decode_responses=True)
        script = self._client.register_script
        self._push, self._adopt, self._claim = script(_LIB + _PUSH), script(_LIB + _ADOPT), script(_LIB + _CLAIM)
        self._ack, self._settle, self._extend = script(_LIB + _ACK), script(_LIB + _SETTLE), script(_LIB + _EXTEND)
        self._release, self._redrive = script(_LIB + _RELEASE), script(_LIB + _REDRIVE)
        self._discard, self._expired = script(_LIB + _DISCARD), script(_LIB + _EXPIRED)
        self._dead, self._next_due = script(_LIB + _DEAD), script(_LIB + _NEXT_DUE)

    async def _run(self, script: Any, *args: Any) -> Any:
        return await self._guard(script(args=[self.prefix, *args]))

    async def _cmd(self, name: str, *args: Any) -> Any:
        return await self._guard(self._client.execute_command(name, *args))

    async def _guard(self, pending: Awaitable[T]) -> T:
        """Redis failures as ``StoreError``, saying whether Redis was unreachable or refused."""
        try:
            return await pending
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreError(f"cannot reach redis at {self.where}: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"queue store redis {self.where}: {exc}") from exc

    async def open(self) -> None:
        await self._cmd("PING")

    async def watch(self, wake: Callable[[str], None], tasks: Any) -> None:
        """Call ``wake(queue)`` when any engine pushes jobs to ``queue`` (``P:wake``), so consumers
        on every engine start at once instead of at their next idle recheck."""
        self._listener = RedisListener(self._client, self.where, on_message=lambda _channel, queue: wake(str(queue)),
                                       log=self._log, what="queue wake-ups", channels=(f"{self.prefix}wake",))
        try:
            await self._listener.open(tasks)
        except RedisUnavailable as exc:
            raise StoreError(str(exc)) from exc

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._client.aclose()

    # -- producing -------------------------------------------------------------------------------

    def push_started(self, jobs: list[Job]) -> asyncio.Future[None]:
        return asyncio.ensure_future(self.push(jobs))

    async def push(self, jobs: list[Job]) -> None:
        if jobs:
            await self._run(self._push, len(jobs), *[x for j in jobs for x in _fields(j)])

    async def adopt(self, from_queue: str, to_queue: str, function_id: str, display: str) -> int:
        return int(await self._run(self._adopt, from_queue, to_queue, function_id, display))

    # -- consuming -------------------------------------------------------------------------------

    async def claim(self, queue: str, now: float, limit: int, *, fifo: bool, lease_s: float, owner: str) -> list[Job]:
        rows = await self._run(self._claim, queue, _num(now), limit, "1" if fifo else "0", _num(now + lease_s), owner)
        return [_job(r) for r in rows]

    async def ack(self, job_ids: list[str]) -> None:
        if job_ids:
            await self._run(self._ack, *job_ids)

    async def retry(self, job_id: str, attempt: int, error: dict[str, Any], at: float) -> bool:
        return int(await self._run(self._settle, job_id, "waiting", _num(at), jsoncodec.dumps_str(error), attempt)) == 1

    async def bury(self, job_id: str, attempt: int, error: dict[str, Any], now: float) -> bool:
        return int(await self._run(self._settle, job_id, "dead", _num(now), jsoncodec.dumps_str(error), attempt)) == 1

    async def extend(self, job_id: str, until: float) -> bool:
        return int(await self._run(self._extend, job_id, _num(until))) == 1

    async def expired(self, queue: str, now: float) -> list[Job]:
        rows = await self._run(self._expired, queue, _num(now))
        return [_job(r) for r in sorted(rows, key=lambda r: int(dict(zip(r[::2], r[1::2], strict=True))["seq"]))]

    async def release_owned_by(self, owners: list[str]) -> int:
        if not owners:
            return 0
        return int(await self._run(self._release, *owners))

    async def owners(self) -> list[str]:
        return sorted(await self._cmd("SMEMBERS", f"{self.prefix}owners"))

    async def next_due(self, queue: str) -> float | None:
        found = [float(x) for x in await self._run(self._next_due, queue) if x != ""]
        return min(found) if found else None

    # -- inspection and dead letters ----------------------------------------------------------------

    async def stats(self) -> dict[str, dict[str, int]]:
        raw = await self._cmd("HGETALL", f"{self.prefix}stats")
        pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
        out: dict[str, dict[str, int]] = {}
        for field, count in pairs:
            state, _, display = str(field).partition(":")
            out.setdefault(display, {"waiting": 0, "active": 0, "dead": 0})[state] = int(count)
        return out

    async def dead(self, display: str, offset: int, limit: int) -> list[Job]:
        return [_job(r) for r in await self._run(self._dead, display, offset, limit)]

    async def redrive(self, display: str, job_id: str | None, now: float) -> list[str]:
        return list(await self._run(self._redrive, display, "0" if job_id is None else "1", job_id or "", _num(now)))

    async def count_dead(self, display: str, job_id: str | None = None) -> int:
        if job_id is None:
            return int(await self._cmd("ZCARD", f"{self.prefix}dead:{display}"))
        state, shown = await self._cmd("HMGET", f"{self.prefix}job:{job_id}", "state", "display")
        return int(state == "dead" and shown == display)

    async def discard(self, display: str, job_id: str) -> int:
        return int(await self._run(self._discard, display, "1", job_id))

    async def queues(self) -> list[str]:
        return list(await self._cmd("HKEYS", f"{self.prefix}queues"))

    async def register_subscribers(self, subscribers: list[Subscriber]) -> None:
        """``P:subscribers``: a hash of ``<topic> NUL <queue>`` -> the subscription as JSON."""
        if subscribers:
            fields = [x for sub in subscribers for x in (f"{sub.topic}\0{sub.queue}", sub.to_json())]
            await self._cmd("HSET", f"{self.prefix}subscribers", *fields)

    async def subscribers(self) -> list[Subscriber]:
        raw = await self._cmd("HVALS", f"{self.prefix}subscribers")
        return sorted((Subscriber.from_json(v) for v in raw), key=lambda s: (s.topic, s.queue))
