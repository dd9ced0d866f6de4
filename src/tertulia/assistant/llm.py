"""A client for any OpenAI-compatible endpoint (OpenAI, Azure OpenAI's v1 API, a local Ollama or
vLLM): chat completions, `POST {base_url}/chat/completions` with `model`, `messages`, `temperature`
and `max_tokens`, the answer `choices[0].message.content`, the tokens spent `usage.prompt_tokens`
and `usage.completion_tokens`; and embeddings, `POST {base_url}/embeddings` with `model` and
`input` (a list of texts, EMBED_BATCH a request), the vectors `data[].embedding` by `data[].index`,
the tokens `usage.prompt_tokens`.

Guarantees:
- Every attempt has the endpoint's timeout (connect, write, and each read); a call makes at most
  `1 + max_retries` attempts, waiting RETRY_BASE_SECONDS, twice that, ... (at most RETRY_MAX_SECONDS,
  or the endpoint's Retry-After when it is shorter than that) between them.
- Retried: timeouts, connection errors, 408, 429 and 5xx. Not retried: any other 4xx (a wrong key,
  an unknown model, a malformed request fail the same way every time) and a 2xx whose body is not a
  chat completion.
- A failure is a `ModelError` whose message is short and safe to show a manager: the status and the
  endpoint's own error message (cut), never the API key (removed if an endpoint echoes it).
- Tokens are what the endpoint's `usage` reports; where it reports none (no `usage`, a timeout after
  the request was sent, a dropped connection, a 2xx that is not the answer asked for) a call counts
  the most it could have spent: `prompt_token_bound` of what was sent and, for a chat, its
  `max_tokens` (every chat request sends one). An error status counts nothing: the endpoint
  refused the request rather than answering it.

Nothing here touches the database: the caller records usage and errors.
"""

import contextlib
import json
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 4.0
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_ERROR_TEXT = 300
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Texts per embeddings request: OpenAI takes up to 2,048, local servers often far fewer; 64 keeps
# each request small enough to answer well within a timeout.
EMBED_BATCH = 64
# The tokens a chat template or an embeddings model may add around each text sent: OpenAI's chat
# format adds 3 a message plus the role, ChatML and Gemma 5 with the role, Llama 3 5 plus the role,
# BERT-style embeddings models [CLS] and [SEP]; a chat's reply is primed with as many again.
FRAMING_TOKENS = 16
NORMAL_FORMS: tuple[Literal["NFC", "NFD", "NFKC", "NFKD"], ...] = ("NFC", "NFD", "NFKC", "NFKD")


def text_token_bound(text: str) -> int:
    """The most tokens `text` can be: its UTF-8 bytes. A byte-level BPE tokenizer (OpenAI's, Llama
    3's, Qwen's, GPT-2's) cuts the text's bytes into tokens of at least one byte each, so it cannot
    make more tokens than there are bytes, whatever its vocabulary; the same holds for SentencePiece
    with byte fallback and WordPiece (a token covers at least one character). Some tokenizers
    normalise the text first (Qwen NFC, T5 NFKC, BERT NFD), and a normal form can be longer than
    the text (U+FDFA becomes 18 characters under NFKC), so the bound is the longest of the text's
    forms. ASCII is the same in every form, and most prompts are mostly ASCII."""
    if text.isascii():
        return len(text)
    return max(len(text.encode()), *(len(unicodedata.normalize(form, text).encode()) for form in NORMAL_FORMS))


def prompt_token_bound(texts: Iterable[str]) -> int:
    """The most tokens a request sending `texts` (a chat's messages' contents, or embeddings'
    inputs) can be charged for its input: each text's bound and its framing."""
    return sum(text_token_bound(text) + FRAMING_TOKENS for text in texts)


def chat_token_bound(contents: Iterable[str], max_tokens: int) -> int:
    """The most a chat request can spend: its messages' bound, the reply's priming, and the most
    it may write."""
    return prompt_token_bound(contents) + FRAMING_TOKENS + max_tokens


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str
    timeout_seconds: float
    max_retries: int


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int  # as reported, or the prompt's bound when the endpoint reported none
    completion_tokens: int  # as reported, or `max_tokens` when the endpoint reported none
    attempts: int
    usage_reported: bool = True


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    tokens: int


class ModelError(Exception):
    """The endpoint did not give a usable completion; `message` is what the settings page shows."""

    def __init__(
        self, message: str, *, retryable: bool, attempts: int = 1, tokens: int = 0, maybe_spent: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.attempts = attempts
        # What the call spent before it failed (embeddings' earlier batches), and, when the endpoint
        # may have answered without saying what it spent (`maybe_spent`), the most it could have.
        self.tokens = tokens
        self.completion_tokens = 0
        self.maybe_spent = maybe_spent


def _url(base_url: str, path: str) -> str:
    """`{base_url}{path}`, keeping a query string (Azure's `?api-version=`) at the end."""
    parts = urlsplit(base_url.strip())
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, parts.query, ""))


def chat_url(base_url: str) -> str:
    return _url(base_url, "/chat/completions")


def embeddings_url(base_url: str) -> str:
    return _url(base_url, "/embeddings")


def _headers(endpoint: Endpoint) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json"}
    if endpoint.api_key:
        headers["authorization"] = f"Bearer {endpoint.api_key}"
        host = (urlsplit(endpoint.base_url).hostname or "").lower()
        if host.endswith(".azure.com"):
            headers["api-key"] = endpoint.api_key  # Azure OpenAI's key header
    return headers


def _safe(text: str, endpoint: Endpoint) -> str:
    clean = " ".join(text.split())
    if endpoint.api_key:
        clean = clean.replace(endpoint.api_key, "***")
    return clean[:MAX_ERROR_TEXT]


def _error_text(status: int, body: bytes, endpoint: Endpoint) -> str:
    """`HTTP 401: Incorrect API key provided` from OpenAI's error shape, else the body's start."""
    detail = ""
    try:
        data = json.loads(body)
    except ValueError:
        detail = body.decode("utf-8", "replace")
    else:
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            detail = str(error.get("message") or error.get("code") or "")
        elif isinstance(error, str):
            detail = error
        elif isinstance(data, dict) and isinstance(data.get("message"), str):
            detail = data["message"]
    detail = _safe(detail, endpoint)
    return f"HTTP {status}: {detail}" if detail else f"HTTP {status}"


def _reported(usage: Any, name: str) -> int | None:
    value = usage.get(name) if isinstance(usage, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


def _completion(body: bytes, attempts: int, prompt_bound: int, max_tokens: int) -> Completion:
    try:
        data = json.loads(body)
        content = data["choices"][0]["message"]["content"]
        usage = data.get("usage")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ModelError(
            "The endpoint answered, but not with a chat completion (choices[0].message.content).",
            retryable=False,
            attempts=attempts,
            maybe_spent=True,
        ) from exc
    if not isinstance(content, str):
        content = ""
    prompt = _reported(usage, "prompt_tokens")
    completion = _reported(usage, "completion_tokens")
    return Completion(
        content,
        prompt_bound if prompt is None else prompt,
        max_tokens if completion is None else completion,
        attempts,
        usage_reported=prompt is not None and completion is not None,
    )


def _wait(attempt: int, retry_after: str | None) -> float:
    wait = float(min(RETRY_BASE_SECONDS * 2**attempt, RETRY_MAX_SECONDS))
    if retry_after is not None:
        with contextlib.suppress(ValueError):
            wait = min(max(float(retry_after), 0.0), RETRY_MAX_SECONDS)
    return wait


def _read(response: httpx.Response) -> bytes:
    body = bytearray()
    for chunk in response.iter_bytes():
        body.extend(chunk)
        if len(body) > MAX_RESPONSE_BYTES:
            raise ModelError("The endpoint's answer is larger than 1 MB.", retryable=False)
    return bytes(body)


def _post(endpoint: Endpoint, url: str, payload: dict[str, Any], sleep: Callable[[float], None]) -> tuple[bytes, int]:
    """One POST with the endpoint's timeout and retries: a 2xx body and the attempts it took, or a
    `ModelError` (`maybe_spent` when its last attempt reached the endpoint and ended with no
    answer: a read or write timeout, a dropped connection, an answer too large)."""
    attempts = 1 + max(endpoint.max_retries, 0)
    last: ModelError | None = None
    with httpx.Client(timeout=httpx.Timeout(endpoint.timeout_seconds), follow_redirects=False) as client:
        for attempt in range(attempts):
            retry_after: str | None = None
            try:
                with client.stream("POST", url, json=payload, headers=_headers(endpoint)) as response:
                    body = _read(response)
                    status = response.status_code
                    retry_after = response.headers.get("retry-after")
            except httpx.TimeoutException as exc:
                last = ModelError(
                    f"No answer within {endpoint.timeout_seconds:g} s (timeout).",
                    retryable=True,
                    attempts=attempt + 1,
                    maybe_spent=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
                )
            except httpx.HTTPError as exc:
                last = ModelError(
                    _safe(f"Could not reach the endpoint: {exc}", endpoint),
                    retryable=True,
                    attempts=attempt + 1,
                    maybe_spent=not isinstance(exc, httpx.ConnectError),
                )
            except ModelError as exc:
                exc.attempts = attempt + 1
                exc.maybe_spent = True
                raise
            else:
                if 200 <= status < 300:
                    return body, attempt + 1
                retryable = status in RETRYABLE_STATUSES or status >= 500
                last = ModelError(_error_text(status, body, endpoint), retryable=retryable, attempts=attempt + 1)
                if not retryable:
                    raise last
            if attempt + 1 < attempts:
                sleep(_wait(attempt, retry_after))
    assert last is not None
    raise last


def chat(
    endpoint: Endpoint,
    messages: Sequence[dict[str, str]],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Completion:
    """One chat completion, with the endpoint's timeout and retries; a `ModelError` otherwise.
    `max_tokens` is always sent, so what the model writes is bounded and a reservation of
    `chat_token_bound` covers the call."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1: an unbounded completion cannot be reserved for")
    payload: dict[str, Any] = {
        "model": endpoint.model,
        "messages": list(messages),
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    prompt_bound = chat_token_bound((m["content"] for m in messages), 0)
    try:
        body, attempts = _post(endpoint, chat_url(endpoint.base_url), payload, sleep)
        return _completion(body, attempts, prompt_bound, max_tokens)
    except ModelError as exc:
        if exc.maybe_spent:
            exc.tokens, exc.completion_tokens = prompt_bound, max_tokens
        raise


def _vectors(body: bytes, count: int, attempts: int, bound: int) -> tuple[list[list[float]], int]:
    """The batch's vectors in input order (`data[].index`), and its tokens (`usage.prompt_tokens`,
    or `total_tokens` for endpoints that give only that; `bound` when there is neither)."""
    try:
        data = json.loads(body)
        items = sorted(data["data"], key=lambda item: int(item["index"]))
        vectors = [[float(x) for x in item["embedding"]] for item in items]
        usage = data.get("usage")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ModelError(
            "The endpoint answered, but not with embeddings (data[].embedding).",
            retryable=False,
            attempts=attempts,
            maybe_spent=True,
        ) from exc
    if len(vectors) != count or not vectors or len({len(v) for v in vectors}) != 1 or not vectors[0]:
        raise ModelError(
            "The endpoint's embeddings do not match the texts sent (one vector each, of one size).",
            retryable=False,
            attempts=attempts,
            maybe_spent=True,
        )
    tokens = _reported(usage, "prompt_tokens")
    if tokens is None:
        tokens = _reported(usage, "total_tokens")
    return vectors, bound if tokens is None else tokens


def embed(
    endpoint: Endpoint,
    texts: Sequence[str],
    *,
    batch_size: int = EMBED_BATCH,
    token_budget: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Embeddings:
    """The texts' embedding vectors, `batch_size` texts a request, each request with the
    endpoint's timeout and retries. `token_budget`: no further request once the tokens spent reach
    it (a `ModelError`, with what was spent). A `ModelError` carries the tokens already spent in
    `tokens`, so the caller can count them."""
    vectors: list[list[float]] = []
    tokens = 0
    url = embeddings_url(endpoint.base_url)
    for start in range(0, len(texts), max(batch_size, 1)):
        if token_budget is not None and tokens >= token_budget:
            raise ModelError("The token budget ran out while computing embeddings.", retryable=False, tokens=tokens)
        chunk = list(texts[start : start + max(batch_size, 1)])
        bound = prompt_token_bound(chunk)
        try:
            body, attempts = _post(endpoint, url, {"model": endpoint.model, "input": chunk}, sleep)
            batch, spent = _vectors(body, len(chunk), attempts, bound)
        except ModelError as exc:
            exc.tokens = tokens + (bound if exc.maybe_spent else 0)
            raise
        if vectors and len(batch[0]) != len(vectors[0]):
            raise ModelError(
                "The endpoint's embeddings changed size between requests.", retryable=False, tokens=tokens + spent
            )
        vectors.extend(batch)
        tokens += spent
    return Embeddings(vectors, tokens)
