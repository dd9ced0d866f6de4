# ruff: noqa: N802  (handlers are named after the Bot API methods they answer)
"""A local Telegram Bot API server for tests: a real HTTP server that speaks the documented wire format
(core.telegram.org/bots/api), so the adapter is tested over HTTP exactly as it talks to Telegram.

    POST|GET /bot<token>/<method>       JSON, form-urlencoded (values JSON-encoded, as
                                        python-telegram-bot sends them) or multipart (uploads)
    GET      /file/bot<token>/<path>    a file's bytes (after getFile)

Methods: getMe, setWebhook, deleteWebhook, getWebhookInfo, getFile, sendMessage, sendPhoto,
sendDocument, sendAudio, sendVoice, sendVideo, sendAnimation, answerCallbackQuery, setMyCommands,
getMyCommands. Answers are `{"ok": true, "result": ...}` or `{"ok": false, "error_code",
"description", "parameters"?}`; an unknown token is 401 "Unauthorized", as Telegram answers.

Like Telegram it refuses text that does not parse under parse_mode HTML ("can't parse entities"),
text over 4096 and captions over 1024 characters, and sends to a chat in `blocked` answer 403 "bot
was blocked by the user". `fail_next` scripts the next answer of a method (429 with retry_after, a
5xx, ...). `deliver` posts an update to the webhook a bot registered, with its secret token, the way
Telegram delivers updates.
"""

import html.parser
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-test"
ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre"}
ALLOWED_TAGS |= {"blockquote", "tg-emoji"}
COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
MEDIA_METHODS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendAudio": "audio",
    "sendVoice": "voice",
    "sendVideo": "video",
    "sendAnimation": "animation",
}


@dataclass
class Call:
    method: str
    token: str
    params: dict[str, Any]
    # Uploaded files: field -> (file name, bytes, content type)
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)


class _HtmlCheck(html.parser.HTMLParser):
    """Telegram's HTML mode: only a few tags, everything else must be escaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS and self.error is None:
            self.error = f'Unsupported start tag "{tag}"'

    def handle_endtag(self, tag: str) -> None:
        if tag not in ALLOWED_TAGS and self.error is None:
            self.error = f'Unsupported end tag "{tag}"'


def html_error(text: str) -> str | None:
    checker = _HtmlCheck()
    checker.feed(text)
    checker.close()
    if checker.error:
        return checker.error
    # A "<" that no tag consumed (e.g. "a < b") is refused by Telegram as well.
    stripped = re.sub(r"</?[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?>", "", text)
    if "<" in stripped or ">" in stripped:
        return "Unexpected character"
    return None


@dataclass
class FakeTelegram:
    url: str = ""
    bots: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # file_id -> (file_path, bytes)
    commands: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    require_https: bool = False
    script: dict[str, list[tuple[int, str, int | None]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    # ----- setting up ------------------------------------------------------------------------------

    def add_bot(self, token: str = BOT_TOKEN, username: str = "tertulia_test_bot", name: str = "Tertulia") -> str:
        bot_id = int(token.split(":", 1)[0])
        self.bots[token] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": name,
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        return token

    def add_file(self, data: bytes, path: str = "photos/file_0.jpg") -> str:
        file_id = f"AgACAgQAAxkBAAI{len(self.files)}{abs(hash(path)) % 10_000}"
        self.files[file_id] = (path, data)
        return file_id

    def fail_next(self, method: str, status: int, description: str, retry_after: int | None = None) -> None:
        self.script.setdefault(method, []).append((status, description, retry_after))

    def sent(self, method: str | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method.startswith("send") and (method is None or c.method == method)]

    def called(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def deliver(self, update: dict[str, Any] | bytes | str, token: str = BOT_TOKEN) -> httpx.Response:
        """Post an update to the bot's webhook, with its secret token, as Telegram does."""
        hook = self.webhooks[token]
        body = update if isinstance(update, bytes) else (update if isinstance(update, str) else json.dumps(update))
        headers = {"Content-Type": "application/json"}
        if hook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
        return httpx.post(hook["url"], content=body, headers=headers, timeout=10)

    def next_id(self) -> int:
        with self.lock:
            return next(self._ids)

    # ----- answering --------------------------------------------------------------------------------

    def handle(self, token: str, method: str, params: dict[str, Any], files: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            self.calls.append(Call(method, token, params, files))
            scripted = self.script.get(method)
            if scripted:
                status, description, retry_after = scripted.pop(0)
                return status, _error(status, description, retry_after)
        bot = self.bots.get(token)
        if bot is None:
            return 401, _error(401, "Unauthorized")
        if method in MEDIA_METHODS:
            return self._send_media(method, bot, params, files)
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return 404, _error(404, "Not Found: method not found")
        result: tuple[int, Any] = handler(token, bot, params, files)
        return result

    def _getMe(self, token: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]) -> tuple[int, Any]:
        return _ok(bot)

    def _setWebhook(
        self, token: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]
    ) -> tuple[int, Any]:
        url = str(params.get("url") or "")
        if not url:
            return 400, _error(400, "Bad Request: bad webhook: URL must be provided for webhook")
        if self.require_https and not url.startswith("https://"):
            return 400, _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            return 400, _error(400, "Bad Request: secret token contains unallowed characters")
        self.webhooks[token] = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": params.get("allowed_updates"),
        }
        return 200, {"ok": True, "result": True, "description": "Webhook was set"}

    def _deleteWebhook(
        self, token: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]
    ) -> tuple[int, Any]:
        existed = self.webhooks.pop(token, None) is not None
        return 200, {
            "ok": True,
            "result": True,
            "description": "Webhook was deleted" if existed else "Webhook is already deleted",
        }

    def _getWebhookInfo(
        self, token: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]
    ) -> tuple[int, Any]:
        hook = self.webhooks.get(token) or {}
        return _ok({"url": hook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 0})

    def _getFile(
        self, token: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]
    ) -> tuple[int, Any]:
        file_id = str(params.get("file_id") or "")
        if file_id not in self.files:
            return 400, _error(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        return _ok(
            {"file_id": file_id, "file_unique_id": f"u{file_id[-6:]}", "file_size": len(data), "file_path": path}
        )

    def _chat(self, params: dict[str, Any]) -> tuple[int, Any] | dict[str, Any]:
        chat_id = params.get("chat_id")
        if isinstance(chat_id, str) and chat_id.lstrip("-").isdigit():
            chat_id = int(chat_id)
        if not isinstance(chat_id, int):
            return 400, _error(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            return 403, _error(403, "Forbidden: bot was blocked by the user")
        return {"id": chat_id, "type": "private" if chat_id > 0 else "group", "first_name": "Customer"}

    def _message(self, bot: dict[str, Any], chat: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self.next_id(),
            "from": {k: bot[k] for k in ("id", "is_bot", "first_name", "username")},
            "chat": chat,
            "date": int(time.time()),
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        reply = params.get("reply_parameters")
        if isinstance(reply, dict) and reply.get("message_id"):
            message["reply_to_message"] = {"message_id": reply["message_id"], "chat": chat, "date": message["date"]}
        return message

    def _sendMessage(
        self, token: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]
    ) -> tuple[int, Any]:
        chat = self._chat(params)
        if isinstance(chat, tuple):
            return chat
        text = str(params.get("text") or "")
        if not text.strip():
            return 400, _error(400, "Bad Request: message text is empty")
        if params.get("parse_mode") == "HTML":
            problem = html_error(text)
            if problem:
                return 400, _error(400, f"Bad Request: can't parse entities: {problem}")
            text = html.unescape(re.sub(r"<[^>]+>", "", text))
        if len(text) > 4096:
            return 400, _error(400, "Bad Request: message is too long")
        return _ok({**self._message(bot, chat, params), "text": text})

    def _send_media(
        self, method: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]
    ) -> tuple[int, Any]:
        chat = self._chat(params)
        if isinstance(chat, tuple):
            return chat
        kind = MEDIA_METHODS[method]
        upload = files.get(kind)
        given = params.get(kind)
        if upload is None and not given:
            return 400, _error(400, f"Bad Request: there is no {kind} in the request")
        caption = str(params.get("caption") or "")
        if params.get("parse_mode") == "HTML" and caption:
            problem = html_error(caption)
            if problem:
                return 400, _error(400, f"Bad Request: can't parse entities: {problem}")
            caption = html.unescape(re.sub(r"<[^>]+>", "", caption))
        if len(caption) > 1024:
            return 400, _error(400, "Bad Request: message caption is too long")
        size = len(upload[1]) if upload else 1234
        file_id = f"sent-{kind}-{self.next_id()}"
        if kind == "photo":
            media: Any = [{"file_id": file_id, "file_unique_id": file_id, "width": 90, "height": 90, "file_size": size}]
        else:
            media = {"file_id": file_id, "file_unique_id": file_id, "file_size": size}
            if kind in ("audio", "voice", "video", "animation"):
                media["duration"] = 1
            if kind in ("video", "animation"):
                media.update(width=90, height=90)
            if upload:
                media["file_name"] = upload[0]
                media["mime_type"] = upload[2]
        message = {**self._message(bot, chat, params), kind: media}
        if kind == "animation":
            message["document"] = dict(media)  # Telegram sends both for an animation
        if caption:
            message["caption"] = caption
        return _ok(message)

    def _answerCallbackQuery(
        self, token: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]
    ) -> tuple[int, Any]:
        if not params.get("callback_query_id"):
            return 400, _error(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        return _ok(True)

    def _setMyCommands(
        self, token: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]
    ) -> tuple[int, Any]:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            return 400, _error(400, "Bad Request: commands must be an array of at most 100 BotCommand")
        for item in commands:
            if not isinstance(item, dict) or not COMMAND.match(str(item.get("command", ""))):
                return 400, _error(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(item.get("description", ""))) <= 256:
                return 400, _error(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[token] = commands
        return _ok(True)

    def _getMyCommands(
        self, token: str, bot: dict[str, Any], params: dict[str, Any], files: dict[str, Any]
    ) -> tuple[int, Any]:
        return _ok(self.commands.get(token, []))

    def file_bytes(self, token: str, path: str) -> bytes | None:
        if token not in self.bots:
            return None
        return next((data for stored_path, data in self.files.values() if stored_path == path), None)


def _ok(result: Any) -> tuple[int, Any]:
    return 200, {"ok": True, "result": result}


def _error(status: int, description: str, retry_after: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return body


def _form_value(value: str) -> Any:
    # python-telegram-bot and our adapter's uploads send objects and lists JSON-encoded.
    if value[:1] in ("[", "{") or value in ("true", "false"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def parse_request(content_type: str, body: bytes, query: str) -> tuple[dict[str, Any], dict[str, Any]]:
    params: dict[str, Any] = {k: _form_value(v) for k, v in parse_qsl(query)}
    files: dict[str, tuple[str, bytes, str]] = {}
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json" and body:
        params.update(json.loads(body))
    elif kind == "application/x-www-form-urlencoded":
        params.update({k: _form_value(v) for k, v in parse_qsl(body.decode())})
    elif kind == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                files[str(name)] = (filename, data, part.get_content_type())
            else:
                params[str(name)] = _form_value(data.decode())
    return params, files


@contextmanager
def fake_telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> None:
            parts = urlsplit(self.path)
            path_only = unquote(parts.path)
            body = self.rfile.read(int(self.headers.get("content-length", "0") or 0))
            if path_only.startswith("/file/bot"):
                token, _, path = path_only.removeprefix("/file/bot").partition("/")
                data = fake.file_bytes(token, path)
                if data is None:
                    self._answer(404, _error(404, "Not Found"))
                else:
                    self._answer(200, data, "application/octet-stream")
                return
            token, _, method = path_only.removeprefix("/bot").partition("/")
            params, files = parse_request(self.headers.get("content-type", ""), body, parts.query)
            status, answer = fake.handle(token, method, params, files)
            self._answer(status, answer)

        def do_POST(self) -> None:
            self._route()

        def do_GET(self) -> None:
            self._route()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
