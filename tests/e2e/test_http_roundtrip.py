"""HTTP -> engine -> Python stdio worker -> response, and the HTTP error answers."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import api_config

WORKER = '''
import time
from iii_stdio import InvocationError, Worker

worker = Worker()

@worker.function("greet::make")
def make(data):
    return {"message": "Hello, " + data["name"] + "!"}

@worker.http("GET", "/users/:id/greet", function_id="http::greet")
def greet(req):
    out = worker.trigger("greet::make", {"name": req["path_params"]["id"]})
    return {"status_code": 200, "headers": {"X-Worker": "py"}, "body": {**out, "q": req["query_params"],
            "path": req["path"], "url": req["url"]}}

@worker.http("POST", "/echo", function_id="http::echo")
async def echo(req):
    return {"statusCode": 201, "body": {"body": req["body"], "method": req["method"],
            "ctype": req["headers"].get("content-type"), "channels": "request_body" in req or "response" in req}}

@worker.http("GET", "/boom", function_id="http::boom")
def boom(req):
    raise ValueError("kaput")

@worker.http("GET", "/typed", function_id="http::typed")
def typed(req):
    raise InvocationError("out_of_stock", "no more widgets")

@worker.http("GET", "/slow", function_id="http::slow")
def slow(req):
    time.sleep(3)
    return {"body": "late"}

@worker.http("GET", "/text", function_id="http::text")
def text(req):
    return {"headers": {"Content-Type": "text/plain"}, "body": "plain words"}

worker.run()
'''

EXEC = """
- class: modules::shell::ExecModule
  config:
    name: api
    exec: ["python worker.py"]
"""


def test_round_trip_and_errors(start_engine):
    engine = start_engine(api_config(EXEC, api_extra="default_timeout: 1000"), {"worker.py": WORKER})
    engine.wait_message("worker ready", source="api")
    url = engine.http_url
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.get("/users/ada%20l/greet", params={"x": "1", "y": "two"})
        assert r.status_code == 200, r.text
        assert r.headers["x-worker"] == "py"
        assert r.json() == {"message": "Hello, ada l!", "q": {"x": "1", "y": "two"},
                            "path": "/users/:id/greet", "url": "/users/ada l/greet"}

        r = client.post("/echo", json={"a": [1, 2]})
        assert r.status_code == 201
        # no channel refs for a stdio worker: it cannot open them (they live on the WebSocket port)
        assert r.json() == {"body": {"a": [1, 2]}, "method": "POST", "ctype": "application/json", "channels": False}

        r = client.post("/echo", content=b"just text", headers={"content-type": "text/plain"})
        assert r.json()["body"] == "just text"

        r = client.post("/echo", content=b"\xff\xfe", headers={"content-type": "application/octet-stream"})
        assert r.status_code == 400 and "not UTF-8" in r.json()["error"]["message"]

        r = client.post("/echo", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid_body"
        assert "not valid JSON" in r.json()["error"]["message"]

        t0 = time.monotonic()
        r = client.get("/no/such/route")
        assert r.status_code == 404
        assert r.json()["error"] == {"code": "route_not_found", "message": "no route for GET /no/such/route"}
        assert time.monotonic() - t0 < 1.0

        r = client.delete("/echo")
        assert r.status_code == 405
        assert r.headers["allow"] == "POST"

        r = client.get("/boom")
        assert r.status_code == 500
        err = r.json()["error"]
        assert err["code"] == "invocation_failed" and "kaput" in err["message"] and err["error_id"]
        assert "Traceback" not in r.text  # the stack goes to the log, not to HTTP clients
        logged = engine.wait_message(err["error_id"])
        assert "ValueError: kaput" in str(logged.get("stacktrace", ""))

        r = client.get("/typed")
        assert r.status_code == 500 and r.json()["error"]["code"] == "out_of_stock"

        r = client.get("/text")
        assert r.text == "plain words" and r.headers["content-type"].startswith("text/plain")

        t0 = time.monotonic()
        r = client.get("/slow")
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert time.monotonic() - t0 < 2.5


def test_cors_preflight_and_headers(start_engine):
    cors = """
    cors:
      allowed_origins: ["http://app.example"]
      allowed_methods: [GET, POST]
    """
    engine = start_engine(api_config(EXEC, api_extra=cors), {"worker.py": WORKER})
    engine.wait_message("worker ready", source="api")
    with httpx.Client(base_url=engine.http_url, timeout=10) as client:
        r = client.options("/echo", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "content-type"})
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert r.headers["access-control-allow-headers"] == "content-type"
        r = client.options("/echo", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 403
        r = client.post("/echo", json={}, headers={"Origin": "http://app.example"})
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        r = client.post("/echo", json={}, headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
