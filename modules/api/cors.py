"""CORS: which origins may call the API, and the answer to a browser's preflight."""

from __future__ import annotations

from modules.api.config import METHODS, CorsConfig


class CorsPolicy:
    def __init__(self, config: CorsConfig | None) -> None:
        origins = config.allowed_origins if config else ["*"]
        methods = config.allowed_methods if config else list(METHODS)
        self.any_origin = not origins or "*" in origins
        self.origins = {o.rstrip("/") for o in origins}
        self.methods = list(METHODS) if (not methods or "*" in methods) else methods

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin.rstrip("/") in self.origins

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """Headers for an actual (non-preflight) response to ``origin``."""
        if not origin or not self.allows(origin):
            return {}
        if self.any_origin:
            return {"Access-Control-Allow-Origin": "*"}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def preflight(self, origin: str, method: str, request_headers: str | None) -> dict[str, str] | None:
        """Headers for a preflight answer, or None when the origin or method is not allowed."""
        if not self.allows(origin) or method.upper() not in self.methods:
            return None
        headers = self.response_headers(origin)
        headers["Access-Control-Allow-Methods"] = ", ".join(self.methods)
        if request_headers:
            headers["Access-Control-Allow-Headers"] = request_headers
        headers["Access-Control-Max-Age"] = "600"
        return headers
