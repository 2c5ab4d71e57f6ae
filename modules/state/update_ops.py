"""``state::update`` / ``stream::update`` operations, as a pure function of the old value.

Shapes and error codes follow the published SDKs (``iii_helpers.stream``): ops are tagged by
``type`` (``set``, ``merge``, ``increment``, ``decrement``, ``append``, ``remove``). A path is a
string naming one first-level key literally (``"a.b"`` is the key ``a.b``), or a list of literal
segments for a nested location; ``""``/``[]``/absent is the root where the op allows it.

Every op either applies completely or is reported in ``errors`` with its index and a stable code;
none is skipped silently. The caller runs ``apply_ops`` inside one atomic read-modify-write, so
concurrent updates never lose each other's changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modules.kv.base import MISSING

MAX_PATH_DEPTH = 32
MAX_SEGMENT_BYTES = 256
MAX_MERGE_DEPTH = 16
MAX_MERGE_KEYS = 1024
FORBIDDEN_SEGMENTS = frozenset({"__proto__", "constructor", "prototype"})


class OpError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass
class UpdateOutcome:
    new_value: Any
    errors: list[dict[str, Any]] = field(default_factory=list)


def apply_ops(old: Any, ops: Any) -> UpdateOutcome:
    """Apply ``ops`` in order to a copy of ``old`` (``None`` = no value yet)."""
    if not isinstance(ops, list):
        raise OpError("ops.not_a_list", f"`ops` must be a list of update operations, got {type(ops).__name__}")
    value = copy.deepcopy(old)
    errors: list[dict[str, Any]] = []
    for index, op in enumerate(ops):
        try:
            value = _apply_one(value, op)
        except OpError as exc:
            errors.append({"op_index": index, "code": exc.code, "message": exc.message})
    return UpdateOutcome(value, errors)


class StoredUpdate:
    """``ops`` as the ``change`` of a KV ``update`` (``state::update``, ``stream::update``).

    Ops that leave a missing key at ``None`` keep it missing; a new value passes ``check`` (the size
    limit) before it is stored. ``errors`` holds the op errors of the last run (the adapter may run
    the change again after a conflict)."""

    def __init__(self, ops: Any, check: Callable[[Any], None]) -> None:
        self.ops = ops
        self.check = check
        self.errors: list[dict[str, Any]] = []

    def __call__(self, old: Any) -> Any:
        outcome = apply_ops(None if old is MISSING else old, self.ops)
        self.errors = outcome.errors
        if outcome.new_value is None and old is MISSING:
            return MISSING  # nothing applied to a missing key: still missing
        self.check(outcome.new_value)
        return outcome.new_value


def announces(old: Any, new: Any, errors: list[dict[str, Any]]) -> bool:
    """Whether an update is a change to announce (triggers, clients): something stored, and either a
    new or different value or every op applied."""
    return new is not MISSING and (old is MISSING or old != new or not errors)


def _apply_one(value: Any, op: Any) -> Any:
    if not isinstance(op, dict):
        raise OpError("op.invalid", f"an update op must be an object, got {type(op).__name__}")
    kind = op.get("type")
    if kind == "set":
        return _set(value, _path(op, "set", root_ok=True), _required(op, "value", "set"))
    if kind == "merge":
        return _merge(value, _path(op, "merge", root_ok=True), _required(op, "value", "merge"))
    if kind in ("increment", "decrement"):
        by = op.get("by", 1)
        if isinstance(by, bool) or not isinstance(by, (int, float)):
            raise OpError(f"{kind}.by_not_number", f"{kind}: `by` must be a number, got {by!r}")
        return _add(value, _path(op, kind, root_ok=False), by if kind == "increment" else -by, kind)
    if kind == "append":
        raw_path = op.get("path")
        return _append(value, _path(op, "append", root_ok=True), _required(op, "value", "append"),
                       nested=isinstance(raw_path, list))
    if kind == "remove":
        return _remove(value, _path(op, "remove", root_ok=False))
    raise OpError("op.unknown_type", f"unknown update op type {kind!r} (set, merge, increment, decrement, "
                  "append, remove)")


def _required(op: dict[str, Any], name: str, kind: str) -> Any:
    if name not in op:
        raise OpError(f"{kind}.missing_{name}", f"{kind}: `{name}` is required")
    return op[name]


def _path(op: dict[str, Any], kind: str, *, root_ok: bool) -> list[str]:
    raw = op.get("path")
    if raw is None or raw == "" or raw == []:
        if not root_ok:
            raise OpError(f"{kind}.path.required", f"{kind}: `path` is required")
        return []
    if isinstance(raw, str):
        segments = [raw]
    elif isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        segments = list(raw)
    else:
        raise OpError(f"{kind}.path.invalid", f"{kind}: `path` must be a string or a list of strings, got {raw!r}")
    if len(segments) > MAX_PATH_DEPTH:
        raise OpError(f"{kind}.path.too_deep", f"{kind}: path has {len(segments)} segments (max {MAX_PATH_DEPTH})")
    for seg in segments:
        if len(seg.encode()) > MAX_SEGMENT_BYTES:
            raise OpError(f"{kind}.path.segment_too_long",
                          f"{kind}: a path segment is {len(seg.encode())} bytes (max {MAX_SEGMENT_BYTES})")
        if seg in FORBIDDEN_SEGMENTS:
            raise OpError(f"{kind}.path.forbidden_segment", f"{kind}: path segment {seg!r} is not allowed")
    return segments


def _parent(value: Any, path: list[str], kind: str, *, create: bool) -> tuple[Any, dict[str, Any] | None]:
    """(new root, the object holding the last segment); intermediates become ``{}`` when ``create``."""
    if value is None and create:
        value = {}
    if not isinstance(value, dict):
        raise OpError(f"{kind}.target_not_object", f"{kind}: the value is {_kind(value)}, not an object")
    node: dict[str, Any] = value
    for seg in path[:-1]:
        child = node.get(seg)
        if not isinstance(child, dict):
            if not create:
                return value, None
            child = node[seg] = {}
        node = child
    return value, node


def _set(value: Any, path: list[str], new: Any) -> Any:
    if not path:
        return copy.deepcopy(new)
    root, node = _parent(value, path, "set", create=True)
    assert node is not None
    node[path[-1]] = copy.deepcopy(new)
    return root


def _merge(value: Any, path: list[str], new: Any) -> Any:
    if not isinstance(new, dict):
        raise OpError("merge.value_not_object", f"merge: `value` must be an object, got {_kind(new)}")
    if len(new) > MAX_MERGE_KEYS:
        raise OpError("merge.value.too_many_keys", f"merge: value has {len(new)} keys (max {MAX_MERGE_KEYS})")
    if _depth(new) > MAX_MERGE_DEPTH:
        raise OpError("merge.value.too_deep", f"merge: value is nested deeper than {MAX_MERGE_DEPTH}")
    bad = FORBIDDEN_SEGMENTS.intersection(new)
    if bad:
        raise OpError("merge.value.forbidden_key", f"merge: key {sorted(bad)[0]!r} is not allowed")
    if not path:
        root = {} if value is None else value
        if not isinstance(root, dict):
            raise OpError("merge.target_not_object", f"merge: the value is {_kind(root)}, not an object")
        root.update(copy.deepcopy(new))
        return root
    root, node = _parent(value, path, "merge", create=True)
    assert node is not None
    target = node.get(path[-1])
    if not isinstance(target, dict):
        target = node[path[-1]] = {}
    target.update(copy.deepcopy(new))
    return root


def _add(value: Any, path: list[str], by: float, kind: str) -> Any:
    root, node = _parent(value, path, kind, create=True)
    assert node is not None
    current = node.get(path[-1])
    if current is None:
        node[path[-1]] = by
    elif isinstance(current, bool) or not isinstance(current, (int, float)):
        raise OpError(f"{kind}.not_number", f"{kind}: {'.'.join(path)!r} holds {_kind(current)}, not a number")
    else:
        node[path[-1]] = current + by
    return root


def _append(value: Any, path: list[str], item: Any, *, nested: bool) -> Any:
    if not path:
        return _appended(value, item, allow_string=True)
    root, node = _parent(value, path, "append", create=True)
    assert node is not None
    node[path[-1]] = _appended(node.get(path[-1]), item, allow_string=not nested)
    return root


def _appended(target: Any, item: Any, *, allow_string: bool) -> Any:
    if target is None:
        return item if allow_string and isinstance(item, str) else [copy.deepcopy(item)]
    if isinstance(target, list):
        target.append(copy.deepcopy(item))
        return target
    if isinstance(target, str):
        if not isinstance(item, str):
            raise OpError("append.type_mismatch", f"append: cannot append {_kind(item)} to a string")
        return target + item
    raise OpError("append.type_mismatch", f"append: the target is {_kind(target)}, not an array or a string")


def _remove(value: Any, path: list[str]) -> Any:
    if value is None:
        return None
    root, node = _parent(value, path, "remove", create=False)
    if node is not None:
        node.pop(path[-1], None)
    return root


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")
