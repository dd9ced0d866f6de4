"""A fake OpenAI-compatible endpoint: a real local HTTP server in a thread, as tests/fakes.py's
providers are, serving what the assistant's client calls.

The shapes follow the OpenAI API reference (https://platform.openai.com/docs/api-reference/chat/create
and https://platform.openai.com/docs/api-reference/embeddings/create), which Ollama and vLLM copy:

- `POST {base}/chat/completions` takes `{"model", "messages": [{"role", "content"}], "temperature",
  "max_tokens"}` and answers `{"id", "object": "chat.completion", "created", "model", "choices":
  [{"index": 0, "message": {"role": "assistant", "content": "..."}, "finish_reason": "stop"}],
  "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}}`;
- `POST {base}/embeddings` takes `{"model", "input": [...]}` and answers `{"object": "list", "data":
  [{"object": "embedding", "index": i, "embedding": [...]}], "model", "usage": {"prompt_tokens",
  "total_tokens"}}`;
- errors are `{"error": {"message", "type", "param", "code"}}` with the HTTP status (401 for a wrong
  key, 429 for a rate limit, 5xx for the server's own trouble).

A test scripts the next answers (`script` for chat completions, `embedding_script` for embeddings:
status, body, delay); past the script every chat call gets `content` as the model's message, and
every text sent to embeddings a deterministic bag-of-words vector (`embedding`): each folded word
of four letters or more, or the meaning `meanings` gives it ("" drops it), adds one to a hashed
dimension, so texts sharing words, or words a test declares alike, are close and others are not.
Every request is kept (path, headers, JSON body).
"""

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tertulia.kit.text import fold

PROMPT_TOKENS = 120
COMPLETION_TOKENS = 30
DIMENSIONS = 512


def embedding(text: str, meanings: dict[str, str] | None = None) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", fold(text)):
        meaning = (meanings or {}).get(word, word)
        if len(word) < 4 or not meaning:
            continue
        vector[int(hashlib.sha256(meaning.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    return vector


def embedding_tokens(texts: list[str]) -> int:
    """What the fake charges for `texts`: one token a word."""
    return sum(len(text.split()) for text in texts)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: dict[str, Any] | None = None  # None: a chat completion of the server's `content`
    delay: float = 0.0  # seconds before answering (a timeout when longer than the client's)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def completion(
    content: str, prompt_tokens: int = PROMPT_TOKENS, completion_tokens: int = COMPLETION_TOKENS
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@dataclass
class FakeOpenAI:
    base_url: str = ""
    content: str = ""
    script: list[Reply] = field(default_factory=list)
    embedding_script: list[Reply] = field(default_factory=list)
    meanings: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    def answer_with(self, answer: str, entry_ids: list[Any]) -> None:
        self.content = json.dumps({"answer": answer, "entry_ids": entry_ids})

    @property
    def chat_calls(self) -> int:
        return sum(1 for r in self.requests if r.path.endswith("/chat/completions"))

    @property
    def embedding_requests(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.endswith("/embeddings")]

    def handle(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append(Request(path, headers, body))
            script = self.embedding_script if path.endswith("/embeddings") else self.script
            if script:
                return script.pop(0)
            return Reply()

    def body_for(self, path: str, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        if reply.body is not None:
            return reply.body
        if path.endswith("/embeddings"):
            inputs = body.get("input") or []
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            return {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": embedding(str(t), self.meanings)}
                    for i, t in enumerate(texts)
                ],
                "model": body.get("model", "fake-embedding"),
                "usage": {"prompt_tokens": embedding_tokens(texts), "total_tokens": embedding_tokens(texts)},
            }
        return completion(self.content)


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = fake.handle(self.path, headers, body)
            if reply.delay:
                # Released at the end of the test, so a slow answer never outlives it.
                fake.released.wait(reply.delay)
            data = json.dumps(fake.body_for(self.path, reply, body)).encode()
            try:
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (its timeout)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    # A short poll interval: shutdown() waits for the loop to notice, 0.5 s by default, every test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.released.set()
        server.shutdown()
        server.server_close()
