"""The delivery loop of one internal queue: lease jobs, call the handler, settle the outcome.

Event-driven, never polling on a fixed beat: the loop sleeps until a push wakes it, a delivery
finishes, or the next job becomes due (a delay, a retry backoff or a lease end), bounded by
``IDLE_RECHECK`` for stores shared with other engine instances. Each delivery holds a lease; a
handler still running when its lease ends (and nobody extended it) is abandoned and the job
retried, so a stuck handler never holds a message forever.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from modules.queue.config import Policy
from modules.queue.store import Job, JobStore, StoreError
from supervisor.core.futures import failed
from supervisor.errors import InvocationError

IDLE_RECHECK = 1.0
# The call's future (``Router.start``: no task per delivery), or a coroutine (run as a task).
Deliver = Callable[[Job], Awaitable[Any]]
Log = Callable[..., None]


class Consumer:
    def __init__(self, store: JobStore, queue: str, policy: Policy, deliver: Deliver, log: Log,
                 owner: str) -> None:
        self.store = store
        self.queue = queue
        self.policy = policy
        self._deliver = deliver
        self._log = log
        self.owner = owner
        self._wake = asyncio.Event()
        # job id -> its delivery's future, then, while a failure is being recorded, that task
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self.leases: dict[str, float] = {}  # job id -> lease end (wall clock), extended by users
        self._closing = False
        self._acked: list[str] = []  # settled successfully, deleted in one transaction per loop turn
        self._next_expiry_check = 0.0
        self._drained = False  # the last claim took everything deliverable
        self._claim_batch = max(1, policy.concurrency // 4)
        self._claimed_at = 0.0  # the time the last claim looked at
        self._expired: set[str] = set()  # deliveries cancelled because their lease ended
        self._lease_timer: asyncio.TimerHandle | None = None
        self._lease_timer_at = 0.0

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Stop taking jobs; deliveries in flight finish (their outcome is still recorded)."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        try:
            while not self._closing or self._inflight:
                self._wake.clear()
                try:
                    await self._flush_acks()
                    if not self._closing:
                        await self._step()
                except StoreError as exc:
                    self._log("error", f"queue {self.queue}: {exc}")
                await self._sleep()
            await self._flush_acks()
        finally:
            if self._lease_timer is not None:
                self._lease_timer.cancel()
            for fut in list(self._inflight.values()):
                fut.cancel()

    async def _flush_acks(self) -> None:
        """Acknowledge in batches: a crash before the flush only means a redelivery (at least once)."""
        if self._acked:
            done, self._acked = self._acked, []
            await self.store.ack(done)

    async def _step(self) -> None:
        now = time.time()
        if now >= self._next_expiry_check:
            self._next_expiry_check = now + IDLE_RECHECK
            for job in await self.store.expired(self.queue, now):
                if job.id not in self._inflight:
                    await self._failed(job, {"code": "lease_expired", "message": (
                        "the delivery was not acknowledged within its visibility timeout "
                        f"({self.policy.visibility_s:g} s): its engine or worker stopped while handling it")})
        free = self.policy.concurrency - len(self._inflight)
        if free <= 0 or (self._inflight and free < self._claim_batch):
            return  # claim in batches: one store transaction per few deliveries, not per delivery
        jobs = await self.store.claim(self.queue, now, free, fifo=self.policy.fifo,
                                      lease_s=self.policy.visibility_s, owner=self.owner)
        self._claimed_at = now
        self._drained = len(jobs) < free
        for job in jobs:
            self._start(job, now)

    async def _sleep(self) -> None:
        if self._wake.is_set():
            return
        timeout: float | None = None
        if not self._closing:
            due = None
            if self._drained:  # nothing deliverable now: sleep until the next delayed job or lease end
                try:
                    due = await self.store.next_due(self.queue)
                except StoreError:
                    due = None
                if due is not None and self.policy.fifo and due <= self._claimed_at:
                    # Due already at the last claim, yet not claimed: a FIFO job behind its group's
                    # head, which is being handled. The head's end wakes us (or its lease end, on
                    # another engine, at the idle recheck); claiming again now would spin.
                    due = None
            timeout = IDLE_RECHECK if due is None else min(max(due - time.time(), 0.0), IDLE_RECHECK)
            free = self.policy.concurrency - len(self._inflight)
            if not self._drained and free >= self._claim_batch:
                timeout = 0.0  # more may be waiting: claim again at once
        if timeout == 0.0:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    def _start(self, job: Job, now: float) -> None:
        """One delivery: the call's future, settled by a callback (the lease timer may cancel it)."""
        lease_end = job.lease_until or now + self.policy.visibility_s
        self.leases[job.id] = lease_end
        try:
            fut: asyncio.Future[Any] = asyncio.ensure_future(self._deliver(job))
        except Exception as exc:  # a bug in our own delivery code: the failure is recorded, the message kept
            fut = failed(exc)
        self._inflight[job.id] = fut
        self._arm_lease_timer(lease_end)
        fut.add_done_callback(functools.partial(self._settled, job))

    def _settled(self, job: Job, fut: asyncio.Future[Any]) -> None:
        self.leases.pop(job.id, None)
        expired = job.id in self._expired
        self._expired.discard(job.id)
        self._wake.set()
        if fut.cancelled():
            if not expired:  # shutdown, not a lease end: the message stays leased and comes back
                self._inflight.pop(job.id, None)
                return
            error = {"code": "visibility_timeout", "message": (
                f"the handler did not finish within the visibility timeout ({self.policy.visibility_s:g} s)")}
        else:
            exc = fut.exception()
            if exc is None:
                self._inflight.pop(job.id, None)
                self._acked.append(job.id)
                return
            error = exc.to_body() if isinstance(exc, InvocationError) else {
                "code": "invocation_failed", "message": f"{type(exc).__name__}: {exc}"}
        # Recording the failure takes the store: a task, which holds the job's place in _inflight
        # meanwhile (so the expired-lease sweep does not record it twice).
        recording = asyncio.get_running_loop().create_task(self._record_failure(job, error))
        self._inflight[job.id] = recording
        recording.add_done_callback(functools.partial(self._recorded, job.id))

    def _recorded(self, job_id: str, _task: asyncio.Future[Any]) -> None:
        self._inflight.pop(job_id, None)
        self._wake.set()

    async def _record_failure(self, job: Job, error: dict[str, Any]) -> None:
        try:
            await self._failed(job, error)
        except StoreError as exc:
            self._log("error", f"queue {self.queue}: could not record the outcome of {job.id}: {exc}")

    def _arm_lease_timer(self, lease_end: float) -> None:
        """One timer per consumer, at the earliest lease end (not a timer per delivery)."""
        if self._lease_timer is not None and self._lease_timer_at <= lease_end:
            return
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        self._lease_timer_at = lease_end
        self._lease_timer = asyncio.get_running_loop().call_later(max(lease_end - time.time(), 0.0),
                                                                  self._check_leases)

    def _check_leases(self) -> None:
        """Cancel deliveries whose lease ended (and was not extended); re-arm for the next one."""
        self._lease_timer = None
        now = time.time()
        earliest: float | None = None
        for job_id, fut in self._inflight.items():
            end = self.leases.get(job_id)
            if end is None:  # settled; its failure is being recorded
                continue
            if end <= now:
                if job_id not in self._expired:
                    self._expired.add(job_id)
                    fut.cancel()
            elif earliest is None or end < earliest:
                earliest = end
        if earliest is not None:
            self._arm_lease_timer(earliest)

    async def _failed(self, job: Job, error: dict[str, Any]) -> None:
        error = {**error, "attempt": job.attempts}
        where = f"{job.display} message {job.id}"
        if job.attempts >= self.policy.max_attempts:
            if await self.store.bury(job.id, job.attempts, error, time.time()):
                self._log("error", f"{where} moved to the dead-letter queue after {job.attempts} attempt(s): "
                          f"{error.get('message')}", function_id=job.function_id, code=error.get("code"))
            return  # else settled already, or claimed again after its lease ended: nothing to undo
        delay = self.policy.retry_delay(job.attempts)
        if await self.store.retry(job.id, job.attempts, error, time.time() + delay):
            self._log("warn", f"{where} failed (attempt {job.attempts} of {self.policy.max_attempts}), retrying in "
                      f"{delay:g} s: {error.get('message')}", function_id=job.function_id, code=error.get("code"))
