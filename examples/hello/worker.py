"""A small Python worker: HTTP routes, a plain function, and a call between functions.

Run it with `iii run` from the repository root (see config.yaml). Edit this file and save:
the engine reloads it without dropping requests.
"""

from iii_stdio import InvocationError, Worker

worker = Worker()


@worker.function("greetings::make", description="Builds a greeting for a name")
def make_greeting(data):
    name = (data or {}).get("name") or "world"
    return {"message": f"Hello, {name}!"}


@worker.http("GET", "/hello/:name", function_id="http::hello")
def hello(req):
    # Call another function through the engine (it could live in any worker, any language).
    greeting = worker.trigger("greetings::make", {"name": req["path_params"]["name"]})
    return {"status_code": 200, "body": greeting}


@worker.http("POST", "/echo", function_id="http::echo")
async def echo(req):
    return {"status_code": 200, "body": {"you_sent": req["body"], "query": req["query_params"]}}


@worker.http("POST", "/sum", function_id="http::sum")
def total(req):
    numbers = (req["body"] or {}).get("numbers")
    if not isinstance(numbers, list) or not all(isinstance(n, (int, float)) for n in numbers):
        return {"status_code": 400, "body": {"error": "send {\"numbers\": [1, 2, 3]}"}}
    return {"status_code": 200, "body": {"sum": sum(numbers)}}


@worker.function("greetings::fail", description="Always fails, to show error reporting")
def fail(_data):
    raise InvocationError("demo_failure", "this function always fails")


worker.logger.info("hello worker registered its functions")
worker.run()
