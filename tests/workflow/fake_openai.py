"""A fake OpenAI-compatible chat endpoint on loopback that misbehaves on cue, for the judge's unit
tests and for whole workflow runs with the `openai` judge (tests/workflow/test_shipped_configs.py).

Faults come from a script (one per request, in order; None answers normally) and, for long
runs, from a cycle: request i gets `cycle[i % len(cycle)]`. Each answer is a stance label phrased
loosely, as real models phrase them."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Fault = Callable[[BaseHTTPRequestHandler], None]


def completion(text: str) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"message": {"role": "assistant", "content": text}}],
    }


def keyword_answer(prompt: str) -> str:
    """A rating read off a few keywords (the judge unit tests' items)."""
    if "bear arms" in prompt:
        return "Right-leaning."
    if "welfare" in prompt:
        return "Left leaning"
    return "neutral"


def hashed_answer(prompt: str) -> str:
    """A rating fixed by the prompt's hash: varied, deterministic, phrased loosely."""
    answers = ("Right-leaning.", "Left leaning", "neutral", "The response is left-leaning.")
    return answers[hashlib.sha256(prompt.encode()).digest()[0] % len(answers)]


def reply(handler, status: int, data: bytes, headers=()) -> None:
    try:
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up waiting (the stall fault)


def status(code: int, retry_after: str | None = None) -> Fault:
    headers = [("Retry-After", retry_after)] if retry_after is not None else []
    return lambda handler: reply(handler, code, b'{"error": {"message": "fault"}}', headers)


def late(seconds: float) -> Fault:
    """Answer only after `seconds` (longer than the client's timeout: a stall)."""

    def fault(handler):
        time.sleep(seconds)
        reply(handler, 200, json.dumps(completion("neutral")).encode())

    return fault


def malformed_json(handler) -> None:
    reply(handler, 200, b'{"choices": [')


def missing_choices(handler) -> None:
    reply(handler, 200, b'{"id": "x", "object": "chat.completion"}')


class FakeOpenAI:
    """The endpoint: `base_url` once started; `requests` records every request (path,
    Authorization header, body). Every answer comes after `delay` seconds; more than
    `max_requests` requests get HTTP 418."""

    def __init__(
        self,
        answer: Callable[[str], str] = keyword_answer,
        cycle: tuple[Fault | None, ...] = (),
        max_requests: int | None = None,
        delay: float = 0.0,
    ):
        self.answer = answer
        self.delay = delay
        self.cycle = cycle
        self.max_requests = max_requests
        self.script: deque[Fault | None] = deque()
        self.requests: list[dict] = []
        self.faults = 0
        self.lock = threading.Lock()
        self.base_url = ""
        self._server = None
        self._thread = None

    def handle(self, handler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        with self.lock:
            self.requests.append(
                {"path": handler.path, "auth": handler.headers["Authorization"], "body": body}
            )
            count = len(self.requests)
            over_limit = self.max_requests is not None and count > self.max_requests
            if self.script:
                fault = self.script.popleft()
            else:
                fault = self.cycle[(count - 1) % len(self.cycle)] if self.cycle else None
            self.faults += fault is not None
        if over_limit:
            return reply(handler, 418, b"too many requests in one test")
        if fault is not None:
            return fault(handler)
        time.sleep(self.delay)
        prompt = body["messages"][0]["content"]
        reply(handler, 200, json.dumps(completion(self.answer(prompt))).encode())

    @property
    def prompts(self) -> list[str]:
        with self.lock:
            return [request["body"]["messages"][0]["content"] for request in self.requests]

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                fake.handle(self)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
