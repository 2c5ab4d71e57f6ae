"""Registry ownership/holds/triggers and the Router's call path, with in-process invokers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from supervisor.core.models import FunctionDef, Invocation, Trigger, TriggerType, Worker, WorkerState
from supervisor.core.registry import Registry, RegistryEvent
from supervisor.core.router import Router, in_process
from supervisor.errors import (
    FunctionNotFound,
    InvocationError,
    InvocationFailed,
    InvocationTimeout,
    RegistrationError,
    TriggerConfigError,
)


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


async def spin(n: int = 10) -> None:
    """Let other tasks run (no wall-clock waiting)."""
    for _ in range(n):
        await asyncio.sleep(0)


def worker(wid: str, slot: str | None = None, state: WorkerState = WorkerState.STARTING) -> Worker:
    return Worker(id=wid, name=wid, kind="stdio", slot=slot, state=state)


def const(value: Any) -> Callable[[Invocation], Awaitable[Any]]:
    async def handler(_data: Any) -> Any:
        return value

    return in_process(handler)


def fn(function_id: str, owner: Worker, value: Any = None) -> FunctionDef:
    return FunctionDef(function_id, owner, const(function_id if value is None else value))


class FakeProvider:
    def __init__(self, reject: Exception | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.reject = reject

    async def register_trigger(self, trigger: Trigger) -> None:
        self.calls.append(("register", trigger.id))
        if self.reject is not None:
            raise self.reject

    async def unregister_trigger(self, trigger: Trigger) -> None:
        self.calls.append(("unregister", trigger.id))


def setup() -> tuple[Registry, Router, list[RegistryEvent]]:
    reg = Registry()
    events: list[RegistryEvent] = []
    reg.subscribe(events.append)
    return reg, Router(reg, default_timeout=5.0), events


# -- router basics ----------------------------------------------------------------------------------


def test_call_in_process_function_passes_data() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        owner = worker("w")

        async def double(data: Any) -> Any:
            return data["n"] * 2

        reg.register_function(FunctionDef("math::double", owner, in_process(double)))
        assert reg.resolve("math::double") is not None
        assert await router.call("math::double", {"n": 21}) == 42
        assert router.inflight == 0
        assert owner.inflight == 0

    run(main())


def test_start_hands_back_a_workers_own_future_and_counts_the_call_until_it_settles() -> None:
    """``Router.start``: no task for a worker's call (its invoker answers with a future)."""

    async def main() -> None:
        reg, router, _ = setup()
        owner = worker("w")
        sent: list[Invocation] = []
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def invoke(invocation: Invocation) -> asyncio.Future[Any]:
            sent.append(invocation)
            return answer

        reg.register_function(FunctionDef("w::f", owner, invoke, enforces_deadline=True, invoke_returns_future=True))
        fut = router.start("w::f", {"n": 1}, metadata={"queue": {"attempt": 1}}, traceparent=None)
        assert fut is answer and not isinstance(fut, asyncio.Task)
        assert sent[0].data == {"n": 1} and sent[0].metadata == {"queue": {"attempt": 1}} and sent[0].traceparent
        assert router.inflight == 1 and owner.inflight == 1
        answer.set_result("ok")
        assert await fut == "ok"
        await spin()
        assert router.inflight == 0 and owner.inflight == 0

        # an in-process invoker answering with a future may refuse at once: a failed future, not a raise
        def refuse(invocation: Invocation) -> asyncio.Future[Any]:
            raise InvocationError("bad input", code="invalid_params")

        reg.register_function(FunctionDef("w::refuse", owner, refuse, enforces_deadline=True,
                                          invoke_returns_future=True))
        refused = router.start("w::refuse", None)
        with pytest.raises(InvocationError, match="bad input"):
            await refused
        await spin()
        assert router.inflight == 0 and owner.inflight == 0

        # anything else (an unknown function, an in-process built-in) runs ``call`` in a task
        reg.register_function(FunctionDef("math::one", owner, const(1)))
        assert await router.start("math::one", None) == 1
        with pytest.raises(FunctionNotFound):
            await router.start("nobody::here", None)
        assert router.inflight == 0

    run(main())


def test_invocation_carries_trace_context_metadata_and_caller() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        seen: list[Invocation] = []

        async def invoker(inv: Invocation) -> Any:
            seen.append(inv)
            return "ok"

        reg.register_function(FunctionDef("f", worker("w"), invoker))
        caller = worker("c")
        parent = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"
        await router.call("f", 1, traceparent=parent, baggage="k=v", metadata={"m": 1}, caller=caller)
        await router.call("f", 2)
        inv = seen[0]
        assert inv.function_id == "f" and inv.data == 1
        assert inv.traceparent is not None
        assert inv.traceparent.split("-")[1] == "0123456789abcdef0123456789abcdef"  # same trace
        assert inv.traceparent.split("-")[2] != "0123456789abcdef"  # new span
        assert inv.baggage == "k=v" and inv.metadata == {"m": 1} and inv.caller is caller
        assert seen[1].traceparent is not None and len(seen[1].traceparent) == 55
        assert seen[0].id != seen[1].id

    run(main())


def test_function_not_found() -> None:
    async def main() -> None:
        _, router, _ = setup()
        with pytest.raises(FunctionNotFound) as info:
            await router.call("missing", None)
        assert info.value.code == "function_not_found"
        assert "missing" in info.value.message
        assert "not found" in info.value.message

    run(main())


def test_timeout() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        owner = worker("w")

        async def hang(_data: Any) -> Any:
            await asyncio.Event().wait()

        reg.register_function(FunctionDef("slow", owner, in_process(hang)))
        with pytest.raises(InvocationTimeout) as info:
            await router.call("slow", None, timeout=0.01)
        assert info.value.code == "timeout"
        assert "slow" in info.value.message
        assert router.inflight == 0 and owner.inflight == 0

    run(main())


def test_default_timeout_applies() -> None:
    async def main() -> None:
        reg = Registry()
        router = Router(reg, default_timeout=0.01)

        async def hang(_data: Any) -> Any:
            await asyncio.Event().wait()

        reg.register_function(FunctionDef("slow", worker("w"), in_process(hang)))
        with pytest.raises(InvocationTimeout):
            await router.call("slow", None)

    run(main())


def test_handler_raising_becomes_invocation_failed() -> None:
    async def main() -> None:
        reg, router, _ = setup()

        async def boom(_data: Any) -> Any:
            raise KeyError("nope")

        reg.register_function(FunctionDef("boom", worker("w"), in_process(boom)))
        with pytest.raises(InvocationFailed) as info:
            await router.call("boom", None)
        assert info.value.code == "invocation_failed"
        assert "KeyError" in info.value.message
        assert isinstance(info.value.__cause__, KeyError)
        assert router.inflight == 0

    run(main())


def test_invocation_error_passes_through_with_code_and_stacktrace() -> None:
    async def main() -> None:
        reg, router, _ = setup()

        async def typed(_data: Any) -> Any:
            raise InvocationError("custom failure", code="my_code", stacktrace="Traceback: here")

        reg.register_function(FunctionDef("typed", worker("w"), in_process(typed)))
        with pytest.raises(InvocationError) as info:
            await router.call("typed", None)
        assert info.value.code == "my_code"
        assert info.value.stacktrace == "Traceback: here"
        assert info.value.to_body() == {"code": "my_code", "message": "custom failure",
                                        "stacktrace": "Traceback: here"}

    run(main())


def test_fire_runs_in_background_and_failures_reach_hook() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        failures: list[tuple[str, InvocationError]] = []
        router.on_fire_error = lambda fid, exc: failures.append((fid, exc))
        got: list[Any] = []

        async def record(data: Any) -> Any:
            got.append(data)
            return None

        reg.register_function(FunctionDef("rec", worker("w"), in_process(record)))
        router.fire("rec", {"x": 1})
        router.fire("nobody", 2)
        assert got == []  # nothing ran synchronously
        await spin()
        assert got == [{"x": 1}]
        assert [(f, e.code) for f, e in failures] == [("nobody", "function_not_found")]

    run(main())


def test_fire_failure_without_hook_is_silent() -> None:
    async def main() -> None:
        _, router, _ = setup()
        router.fire("nobody", None)
        await spin()

    run(main())


def test_drain_waits_for_running_calls() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        gate = asyncio.Event()

        async def wait_gate(_data: Any) -> Any:
            await gate.wait()
            return "done"

        reg.register_function(FunctionDef("g", worker("w"), in_process(wait_gate)))
        assert await router.drain(0.0) is True  # nothing running
        call = asyncio.create_task(router.call("g", None))
        await spin()
        assert router.inflight == 1
        assert await router.drain(0.01) is False
        drain = asyncio.create_task(router.drain(5.0))
        await spin()
        assert not drain.done()
        gate.set()
        assert await drain is True
        assert await call == "done"

    run(main())


def test_close_cancels_fire_and_forget_calls() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        started = asyncio.Event()

        async def hang(_data: Any) -> Any:
            started.set()
            await asyncio.Event().wait()

        reg.register_function(FunctionDef("hang", worker("w"), in_process(hang)))
        router.fire("hang", None)
        await started.wait()
        await router.close()
        assert router.inflight == 0

    run(main())


def test_worker_wait_idle() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        owner = worker("w")
        gate = asyncio.Event()

        async def wait_gate(_data: Any) -> Any:
            await gate.wait()

        reg.register_function(FunctionDef("g", owner, in_process(wait_gate)))
        call = asyncio.create_task(router.call("g", None))
        await spin()
        idle = asyncio.create_task(owner.wait_idle())
        await spin()
        assert owner.inflight == 1 and not idle.done()
        gate.set()
        await idle
        await call

    run(main())


# -- ownership --------------------------------------------------------------------------------------


def test_register_function_rejects_empty_id() -> None:
    reg = Registry()
    with pytest.raises(RegistrationError) as info:
        reg.register_function(fn("", worker("w")))
    assert info.value.code == "invalid_params"


def test_removing_worker_removes_its_functions_and_triggers() -> None:
    async def main() -> None:
        reg, router, events = setup()
        engine = Worker("engine", "engine", kind="engine", state=WorkerState.READY)
        provider = FakeProvider()
        await reg.register_trigger_type(TriggerType("http", provider, engine))
        w = worker("w")
        reg.add_worker(w)
        reg.register_function(fn("a", w))
        reg.register_function(fn("b", w))
        trig = await reg.register_trigger(w, "http", "a", {"p": 1})
        assert trig.bound and provider.calls == [("register", trig.id)]
        await reg.remove_worker(w)
        assert w.state is WorkerState.GONE
        assert "w" not in reg.workers
        assert reg.resolve("a") is None and not reg.known("a") and not reg.known("b")
        assert trig.id not in reg.triggers
        assert provider.calls == [("register", trig.id), ("unregister", trig.id)]
        kinds = [e.kind for e in events]
        assert kinds.count("function_removed") == 2
        assert "trigger_removed" in kinds and kinds[-1] == "worker_removed"
        with pytest.raises(FunctionNotFound, match="not found"):
            await router.call("a", None)

    run(main())


def test_newest_registration_wins_and_falls_back_to_older() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        old, new = worker("old"), worker("new")
        reg.register_function(fn("f", old, "from-old"))
        reg.register_function(fn("f", new, "from-new"))
        assert await router.call("f", None) == "from-new"
        assert [d.worker.id for d in reg.functions()] == ["new"]
        await reg.remove_worker(new)
        assert await router.call("f", None) == "from-old"
        await reg.remove_worker(old)
        assert not reg.known("f")

    run(main())


def test_resolve_skips_a_newest_that_is_not_live() -> None:
    reg = Registry()
    old, new = worker("old"), worker("new")
    reg.register_function(fn("f", old))
    reg.register_function(fn("f", new))
    new.state = WorkerState.DRAINING
    resolved = reg.resolve("f")
    assert resolved is not None and resolved.worker is old
    old.state = WorkerState.GONE
    assert reg.resolve("f") is None
    assert reg.known("f")


def test_re_registering_replaces_own_entry() -> None:
    reg = Registry()
    w = worker("w")
    reg.register_function(fn("f", w, 1))
    reg.register_function(fn("f", w, 2))
    assert len(reg.functions()) == 1
    assert reg.unregister_function(w, "f") is True
    assert reg.unregister_function(w, "f") is False
    assert not reg.known("f")


def test_unregister_function_of_other_worker_is_refused() -> None:
    reg = Registry()
    a, b = worker("a"), worker("b")
    reg.register_function(fn("f", a))
    assert reg.unregister_function(b, "f") is False
    assert reg.unregister_function(b, "nothing") is False
    assert reg.known("f")


def test_unsubscribe() -> None:
    reg = Registry()
    events: list[RegistryEvent] = []
    unsubscribe = reg.subscribe(events.append)
    reg.add_worker(worker("w"))
    unsubscribe()
    reg.add_worker(worker("x"))
    assert [e.kind for e in events] == ["worker_added"]


# -- slot holds -------------------------------------------------------------------------------------


def test_slot_hold_keeps_stale_registrations_and_call_waits_for_new_instance() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        first = worker("w1", slot="svc")
        reg.add_worker(first)
        reg.register_function(fn("svc::f", first, "first"))
        await reg.remove_worker(first, hold_for=30.0)
        assert reg.known("svc::f")  # stale, kept
        assert reg.resolve("svc::f") is None
        assert reg.hold_deadline("svc::f") is not None
        assert reg.hold_deadline("other") is None

        call = asyncio.create_task(router.call("svc::f", "x"))
        await spin()
        assert not call.done()

        second = worker("w2", slot="svc")
        reg.add_worker(second)
        await spin()
        assert not call.done()  # a new worker alone is not enough
        reg.register_function(fn("svc::f", second, "second"))
        assert await call == "second"
        assert [d.worker for d in reg.functions()] == [second]  # the stale entry was replaced

    run(main())


def test_after_hold_deadline_call_fails_fast_as_not_available() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        first = worker("w1", slot="svc")
        reg.register_function(fn("svc::f", first))
        await reg.remove_worker(first, hold_for=0.0)  # the hold is already over
        assert reg.hold_deadline("svc::f") is None
        with pytest.raises(FunctionNotFound) as info:
            await asyncio.wait_for(router.call("svc::f", None), 1.0)
        assert "not available" in info.value.message
        assert info.value.code == "function_not_found"

    run(main())


def test_hold_deadline_reached_while_waiting() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        first = worker("w1", slot="svc")
        reg.register_function(fn("svc::f", first))
        await reg.remove_worker(first, hold_for=30.0)
        call = asyncio.create_task(router.call("svc::f", None))
        await spin()
        assert not call.done()
        reg.hold_slot("svc", 0.0, startup=False)  # shorten the hold: the deadline is now past
        reg.add_worker(worker("unrelated"))  # any registry change wakes the waiter
        with pytest.raises(FunctionNotFound, match="not available"):
            await asyncio.wait_for(call, 1.0)

    run(main())


def test_call_timeout_shorter_than_hold() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        first = worker("w1", slot="svc")
        reg.register_function(fn("svc::f", first))
        await reg.remove_worker(first, hold_for=30.0)
        with pytest.raises(FunctionNotFound, match="not available"):
            await router.call("svc::f", None, timeout=0.01)

    run(main())


def test_release_slot_drops_stale_registrations_and_wakes_callers() -> None:
    async def main() -> None:
        reg, router, events = setup()
        engine = Worker("engine", "engine", kind="engine", state=WorkerState.READY)
        provider = FakeProvider()
        await reg.register_trigger_type(TriggerType("cron", provider, engine))
        first = worker("w1", slot="svc")
        reg.register_function(fn("svc::f", first))
        trig = await reg.register_trigger(first, "cron", "svc::f", {"expr": "* * * * *"})
        await reg.remove_worker(first, hold_for=30.0)
        assert trig.id in reg.triggers and reg.known("svc::f")
        assert provider.calls == [("register", trig.id)]  # a hold keeps the trigger bound

        call = asyncio.create_task(router.call("svc::f", None))
        await spin()
        assert not call.done()
        await reg.release_slot("svc")
        with pytest.raises(FunctionNotFound, match="not found"):
            await asyncio.wait_for(call, 1.0)
        assert not reg.known("svc::f")
        assert trig.id not in reg.triggers
        assert provider.calls[-1] == ("unregister", trig.id)
        await reg.release_slot("svc")  # releasing again is a no-op

    run(main())


def test_mark_ready_drops_what_the_new_instance_did_not_register() -> None:
    async def main() -> None:
        reg, router, events = setup()
        first = worker("w1", slot="svc")
        reg.register_function(fn("svc::kept", first, "old"))
        reg.register_function(fn("svc::dropped", first))
        await reg.remove_worker(first, hold_for=30.0)
        second = worker("w2", slot="svc")
        reg.add_worker(second)
        reg.register_function(fn("svc::kept", second, "new"))
        await reg.mark_ready(second)
        assert second.state is WorkerState.READY
        assert reg.known("svc::kept") and not reg.known("svc::dropped")
        assert await router.call("svc::kept", None) == "new"
        assert events[-1].kind == "worker_ready"

    run(main())


def test_hold_without_slot_drops_at_once() -> None:
    async def main() -> None:
        reg, _, _ = setup()
        w = worker("w")  # no slot
        reg.register_function(fn("f", w))
        await reg.remove_worker(w, hold_for=30.0)
        assert not reg.known("f")

    run(main())


def test_startup_hold_makes_unknown_ids_wait() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        reg.hold_slot("svc", 30.0, startup=True)
        assert reg.hold_deadline("anything") is not None
        assert reg.hold_deadline(None) is not None
        call = asyncio.create_task(router.call("svc::late", 5))
        await spin()
        assert not call.done()
        w = worker("w", slot="svc")
        reg.add_worker(w)

        async def inc(data: Any) -> Any:
            return data + 1

        reg.register_function(FunctionDef("svc::late", w, in_process(inc)))
        assert await call == 6
        await reg.mark_ready(w)  # ends the startup hold
        assert reg.hold_deadline("anything") is None
        with pytest.raises(FunctionNotFound, match="not found"):
            await router.call("never", None)

    run(main())


def test_startup_hold_release_fails_waiting_unknown_call() -> None:
    async def main() -> None:
        reg, router, _ = setup()
        reg.hold_slot("svc", 30.0, startup=True)
        call = asyncio.create_task(router.call("never", None))
        await spin()
        assert not call.done()
        await reg.release_slot("svc")
        with pytest.raises(FunctionNotFound, match="not found"):
            await asyncio.wait_for(call, 1.0)

    run(main())


# -- trigger types and triggers --------------------------------------------------------------------


def test_trigger_with_unknown_type_is_parked_then_bound() -> None:
    async def main() -> None:
        reg, _, events = setup()
        w = worker("w")
        trig = await reg.register_trigger(w, "queue", "f", {"topic": "t"}, metadata={"m": 1})
        assert not trig.bound
        assert reg.triggers[trig.id] is trig
        assert "trigger_parked" in [e.kind for e in events]
        assert trig.describe()["bound"] is False

        provider = FakeProvider()
        provider_worker = worker("p", state=WorkerState.READY)
        await reg.register_trigger_type(TriggerType("queue", provider, provider_worker))
        assert trig.bound
        assert provider.calls == [("register", trig.id)]
        assert events[-1].kind == "trigger_added"

    run(main())


def test_explicit_trigger_id_is_kept() -> None:
    async def main() -> None:
        reg, _, _ = setup()
        trig = await reg.register_trigger(worker("w"), "t", "f", {}, id_="my-id")
        assert trig.id == "my-id"

    run(main())


def test_same_id_same_binding_is_adopted_without_provider_call() -> None:
    async def main() -> None:
        reg, _, events = setup()
        provider = FakeProvider()
        await reg.register_trigger_type(TriggerType("http", provider, worker("p", state=WorkerState.READY)))
        w = worker("w")
        first = await reg.register_trigger(w, "http", "f", {"path": "/a"}, id_="t1")
        again = await reg.register_trigger(w, "http", "f", {"path": "/a"}, id_="t1", metadata={"v": 2})
        assert again is first
        assert again.metadata == {"v": 2}
        assert provider.calls == [("register", "t1")]
        assert events[-1].kind == "trigger_adopted"

    run(main())


def test_same_id_other_binding_replaces() -> None:
    async def main() -> None:
        reg, _, _ = setup()
        provider = FakeProvider()
        await reg.register_trigger_type(TriggerType("http", provider, worker("p", state=WorkerState.READY)))
        w = worker("w")
        first = await reg.register_trigger(w, "http", "f", {"path": "/a"}, id_="t1")
        second = await reg.register_trigger(w, "http", "f", {"path": "/b"}, id_="t1")
        assert second is not first
        assert reg.triggers["t1"] is second and second.config == {"path": "/b"}
        assert provider.calls == [("register", "t1"), ("unregister", "t1"), ("register", "t1")]

    run(main())


def test_stale_trigger_of_same_slot_is_adopted_by_identical_binding() -> None:
    async def main() -> None:
        reg, _, _ = setup()
        provider = FakeProvider()
        await reg.register_trigger_type(TriggerType("http", provider, worker("p", state=WorkerState.READY)))
        first = worker("w1", slot="svc")
        trig = await reg.register_trigger(first, "http", "svc::f", {"path": "/a"})
        await reg.remove_worker(first, hold_for=30.0)
        second = worker("w2", slot="svc")
        adopted = await reg.register_trigger(second, "http", "svc::f", {"path": "/a"})
        assert adopted is trig
        assert adopted.worker is second
        assert provider.calls == [("register", trig.id)]  # no churn
        await reg.mark_ready(second)  # release: the adopted trigger is not stale any more
        assert reg.triggers[trig.id] is trig

    run(main())


def test_stale_twin_needs_identical_binding() -> None:
    async def main() -> None:
        reg, _, _ = setup()
        provider = FakeProvider()
        await reg.register_trigger_type(TriggerType("http", provider, worker("p", state=WorkerState.READY)))
        first = worker("w1", slot="svc")
        old = await reg.register_trigger(first, "http", "svc::f", {"path": "/a"})
        await reg.remove_worker(first, hold_for=30.0)
        second = worker("w2", slot="svc")
        new = await reg.register_trigger(second, "http", "svc::f", {"path": "/changed"})
        assert new is not old
        await reg.mark_ready(second)
        assert old.id not in reg.triggers and new.id in reg.triggers
        assert provider.calls == [("register", old.id), ("register", new.id), ("unregister", old.id)]

    run(main())


def test_no_adoption_across_slots_or_without_slot() -> None:
    async def main() -> None:
        reg, _, _ = setup()
        a = worker("a", slot="one")
        t1 = await reg.register_trigger(a, "x", "f", {})
        await reg.remove_worker(a, hold_for=30.0)
        t2 = await reg.register_trigger(worker("b", slot="two"), "x", "f", {})
        t3 = await reg.register_trigger(worker("c"), "x", "f", {})
        assert len({t1.id, t2.id, t3.id}) == 3

    run(main())


def test_provider_rejecting_fails_registration_and_trigger_is_not_kept() -> None:
    async def main() -> None:
        reg, _, _ = setup()
        provider = FakeProvider(reject=TriggerConfigError("api_path is required"))
        await reg.register_trigger_type(TriggerType("http", provider, worker("p", state=WorkerState.READY)))
        with pytest.raises(TriggerConfigError) as info:
            await reg.register_trigger(worker("w"), "http", "f", {}, id_="bad")
        assert info.value.code == "invalid_trigger_config"
        assert "bad" not in reg.triggers
        assert reg.triggers == {}

    run(main())


def test_parked_trigger_rejected_when_type_arrives_stays_parked() -> None:
    async def main() -> None:
        reg, _, events = setup()
        trig = await reg.register_trigger(worker("w"), "http", "f", {})
        provider = FakeProvider(reject=TriggerConfigError("nope"))
        await reg.register_trigger_type(TriggerType("http", provider, worker("p", state=WorkerState.READY)))
        assert not trig.bound
        assert [e.kind for e in events if e.kind == "trigger_rejected"] == ["trigger_rejected"]

    run(main())


def test_trigger_type_owner_gone_parks_its_triggers() -> None:
    async def main() -> None:
        reg, _, events = setup()
        provider_worker = worker("p", state=WorkerState.READY)
        reg.add_worker(provider_worker)
        provider = FakeProvider()
        await reg.register_trigger_type(TriggerType("q", provider, provider_worker))
        trig = await reg.register_trigger(worker("w"), "q", "f", {})
        assert trig.bound
        await reg.remove_worker(provider_worker)
        assert "q" not in reg.trigger_types
        assert not trig.bound and trig.id in reg.triggers
        assert "trigger_parked" in [e.kind for e in events]
        # a new provider picks the trigger up again
        other = FakeProvider()
        await reg.register_trigger_type(TriggerType("q", other, worker("p2", state=WorkerState.READY)))
        assert trig.bound and other.calls == [("register", trig.id)]

    run(main())


def test_trigger_type_conflicts_with_live_provider() -> None:
    async def main() -> None:
        reg, _, _ = setup()
        live = worker("a", state=WorkerState.READY)
        await reg.register_trigger_type(TriggerType("q", FakeProvider(), live))
        with pytest.raises(RegistrationError) as info:
            await reg.register_trigger_type(TriggerType("q", FakeProvider(), worker("b")))
        assert info.value.code == "trigger_type_exists"
        with pytest.raises(RegistrationError) as info:
            await reg.register_trigger_type(TriggerType("", FakeProvider(), worker("b")))
        assert info.value.code == "invalid_params"

    run(main())


def test_unregister_trigger_type_and_trigger_checks_owner() -> None:
    async def main() -> None:
        reg, _, _ = setup()
        owner, other = worker("a", state=WorkerState.READY), worker("b")
        await reg.register_trigger_type(TriggerType("q", FakeProvider(), owner))
        with pytest.raises(RegistrationError) as info:
            await reg.unregister_trigger_type(other, "q")
        assert info.value.code == "trigger_type_not_found"
        trig = await reg.register_trigger(owner, "q", "f", {})
        with pytest.raises(RegistrationError) as info:
            await reg.unregister_trigger(other, trig.id)
        assert info.value.code == "trigger_not_found"
        await reg.unregister_trigger(owner, trig.id)
        assert trig.id not in reg.triggers
        await reg.unregister_trigger_type(owner, "q")
        assert "q" not in reg.trigger_types

    run(main())


def test_unbind_failure_is_reported_not_raised() -> None:
    class FailingUnbind(FakeProvider):
        async def unregister_trigger(self, trigger: Trigger) -> None:
            raise ConnectionError("provider died")

    async def main() -> None:
        reg, _, events = setup()
        provider_worker = worker("p", state=WorkerState.READY)
        await reg.register_trigger_type(TriggerType("q", FailingUnbind(), provider_worker))
        w = worker("w")
        trig = await reg.register_trigger(w, "q", "f", {})
        await reg.remove_worker(w)
        assert trig.id not in reg.triggers
        assert "trigger_unbind_failed" in [e.kind for e in events]

    run(main())


# -- namespaces ------------------------------------------------------------------------------


def test_namespaced_lookup_is_strict_except_for_engine_built_ins():
    async def main() -> None:
        reg = Registry()
        router = Router(reg)
        orders = worker("orders-w")
        orders.namespace = "orders"
        plain = worker("plain-w")
        engine = Worker(id="engine", name="engine", kind="engine", state=WorkerState.READY)
        reg.register_function(fn("o::get", orders, "from orders"))
        reg.register_function(fn("shared", orders, "shared in orders"))
        reg.register_function(fn("shared", plain, "shared in default"))
        reg.register_function(fn("state::get", engine, "built-in"))
        assert await router.call("o::get", None) == "from orders"  # no namespace: found anywhere
        assert await router.call("o::get", None, namespace="orders") == "from orders"
        with pytest.raises(FunctionNotFound, match="registered in namespace\\(s\\): orders"):
            await router.call("o::get", None, namespace="default")
        assert await router.call("shared", None) == "shared in default"  # prefers default
        assert await router.call("shared", None, namespace="orders") == "shared in orders"
        assert await router.call("state::get", None, namespace="orders") == "built-in"
        assert {(f.id, f.namespace) for f in reg.registrations()} == {
            ("o::get", "orders"), ("shared", "orders"), ("shared", "default"), ("state::get", "default")}
        orders.namespace = "billing"  # announced late: its functions move with it
        assert await router.call("o::get", None, namespace="billing") == "from orders"

    run(main())
