"""The route table: ``METHOD`` + path pattern with ``:name`` segments -> the trigger serving it.

Pure data structure (no I/O) so matching is tested directly. Static routes are one dict lookup;
routes with parameters are tried most-specific first (a static segment beats a parameter at the
same position). Trailing slashes are ignored; segments are percent-decoded after splitting, so
``%2F`` stays inside one parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from supervisor.errors import TriggerConfigError


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # normalised: leading "/", no trailing "/"
    function_id: str
    trigger_id: str
    condition_function_id: str | None = None
    segments: tuple[str, ...] = field(default=(), compare=False)

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(s[1:] for s in self.segments if s.startswith(":"))

    @property
    def shape(self) -> tuple[str, ...]:
        return tuple(":" if s.startswith(":") else s for s in self.segments)


def normalise_pattern(api_path: str) -> tuple[str, tuple[str, ...]]:
    path = "/" + api_path.strip().strip("/")
    segments = tuple(s for s in path.split("/") if s)
    for seg in segments:
        if seg.startswith(":") and (len(seg) == 1 or not seg[1:].replace("_", "a").isalnum()):
            raise TriggerConfigError(f"api_path {api_path!r}: parameter {seg!r} needs a name of letters, digits, _")
    names = [s[1:] for s in segments if s.startswith(":")]
    if len(names) != len(set(names)):
        raise TriggerConfigError(f"api_path {api_path!r} uses a parameter name twice")
    return path, segments


class RouteTable:
    def __init__(self) -> None:
        self._static: dict[tuple[str, str], Route] = {}
        self._dynamic: dict[str, list[Route]] = {}
        self._by_trigger: dict[str, Route] = {}

    def add(self, route: Route) -> Route | None:
        """Add ``route``; returns the route it replaced (same method and pattern), if any."""
        replaced = None
        if not route.params:
            replaced = self._static.get((route.method, route.pattern))
            self._static[(route.method, route.pattern)] = route
        else:
            routes = self._dynamic.setdefault(route.method, [])
            for existing in routes:
                if existing.shape == route.shape and existing.pattern != route.pattern:
                    raise TriggerConfigError(
                        f"{route.method} {route.pattern} conflicts with {existing.method} {existing.pattern} "
                        f"(served by {existing.function_id!r}): same shape, different parameter names")
            for i, existing in enumerate(routes):
                if existing.pattern == route.pattern:
                    replaced = existing
                    routes[i] = route
                    break
            else:
                routes.append(route)
                routes.sort(key=_specificity)
        if replaced is not None:
            self._by_trigger.pop(replaced.trigger_id, None)
        self._by_trigger[route.trigger_id] = route
        return replaced

    def remove(self, trigger_id: str) -> Route | None:
        route = self._by_trigger.pop(trigger_id, None)
        if route is None:
            return None
        if not route.params:
            if self._static.get((route.method, route.pattern)) is route:
                del self._static[(route.method, route.pattern)]
        else:
            routes = self._dynamic.get(route.method, [])
            if route in routes:
                routes.remove(route)
        return route

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        if "%" not in raw_path:  # the usual request: a static route keyed by the path as sent
            route = self._static.get((method, raw_path))
            if route is not None:
                return route, {}
        path = "/" + raw_path.strip("/") if raw_path != "/" else "/"
        if "%2f" not in path.lower():  # an encoded "/" stays inside its segment: no static match
            route = self._static.get((method, unquote(path)))
            if route is not None:
                return route, {}
        routes = self._dynamic.get(method)
        if not routes:
            return None
        parts = [p for p in path.split("/") if p]
        for route in routes:
            segs = route.segments
            if len(segs) != len(parts):
                continue
            params: dict[str, str] = {}
            for seg, part in zip(segs, parts, strict=True):
                if seg[0] == ":":
                    params[seg[1:]] = unquote(part)
                elif seg != unquote(part):
                    break
            else:
                return route, params
        return None

    def allowed_methods(self, raw_path: str) -> list[str]:
        """Methods that have a route for this path (for 405 and CORS preflight)."""
        return sorted({m for m in _ALL if self.match(m, raw_path) is not None})

    def __len__(self) -> int:
        return len(self._by_trigger)


_ALL = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


def _specificity(route: Route) -> tuple[int, ...]:
    # static segments first, position by position
    return tuple(1 if s.startswith(":") else 0 for s in route.segments)
