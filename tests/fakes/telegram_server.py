"""A fake Telegram Bot API on 127.0.0.1 for tests: long polling, sends, files, fault injection.

It stands in for the far side of the network only; nanobot's real Telegram channel talks to it
over HTTP, with the JSON shapes the Bot API documents ({"ok": true, "result": …} or
{"ok": false, "error_code": N, "description": "…", "parameters": {"retry_after": N}}).

    from fakes.telegram_server import FakeTelegram

    with FakeTelegram() as tg:
        cfg = TelegramConfig(enabled=True, token=tg.token, api_base=tg.api_base, poll_timeout=1)
        uid = tg.push_message(123, "hello", username="alice")     # returns the update_id
        ...                                                        # run the channel
        sent = tg.wait_for_sent(1, timeout=5)                      # [{"chat_id": "123", "text": …}]

Methods: getMe, getUpdates (offset confirms and forgets older updates; `timeout` long-polls;
a second overlapping getUpdates ends the first with 409 as Telegram does), sendMessage (4096
visible characters at most; parse_mode HTML checked for allowed, balanced tags and valid
entities), editMessageText (`edits`; "message is not modified" as Telegram says it),
deleteMessage (`deleted`), setMyCommands (`commands`), sendChatAction, getFile (+ GET /file/bot<token>/<file_path>), deleteWebhook.
Parameters may come as a JSON body, a form body or a query string. A wrong token gets 401.

Faults: fail_next(method, status, description, retry_after=None, count=1) answers the next
calls of method with that error; drop_next(method, count=1) closes the connection without an
answer (method "file" for downloads); clear_faults(method=None) forgets those not yet used. `calls` lists method names in arrival order, `requests`
(method, params) pairs, `actions` the chat actions, `proxied` whether a request arrived in
proxy form (absolute URI). Every wait is bounded.
"""

from __future__ import annotations

import email
import html
import itertools
import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmno"
MAX_TEXT = 4096
MAX_POLL_WAIT = 50.0
_ALLOWED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
    "a", "code", "pre", "blockquote", "tg-emoji",
}  # fmt: skip
_TAG_RE = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>\"']+))?)*)\s*>"
)
_ENTITY_RE = re.compile(r"&(?:lt|gt|amp|quot|#\d{1,7}|#x[0-9a-fA-F]{1,6});")


class BadHTML(ValueError):
    pass


def visible_html(text: str) -> str:
    """The text a user would see for parse_mode HTML; raises BadHTML as Telegram refuses it."""
    out, stack, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "<":
            m = _TAG_RE.match(text, i)
            if not m:
                raise BadHTML(f"Unexpected character '<' at byte offset {i}")
            closing, tag = m.group(1), m.group(2).lower()
            if tag not in _ALLOWED_TAGS:
                raise BadHTML(f'Unsupported start tag "{tag}" at byte offset {i}')
            if closing:
                if not stack or stack[-1] != tag:
                    raise BadHTML(f'Unmatched end tag at byte offset {i}, expected "</{tag}>"')
                stack.pop()
            else:
                stack.append(tag)
            i = m.end()
        elif c == "&":
            m = _ENTITY_RE.match(text, i)
            if not m:
                raise BadHTML(f"Character entity expected at byte offset {i}")
            out.append(html.unescape(m.group(0)))
            i = m.end()
        elif c == ">":
            raise BadHTML(f"Unexpected character '>' at byte offset {i}")
        else:
            out.append(c)
            i += 1
    if stack:
        raise BadHTML(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after


class _QuietServer(ThreadingHTTPServer):
    """A client that goes away mid-request (a killed gateway) is normal here, not an error."""

    daemon_threads = True
    request_queue_size = 2048  # the default 5 drops connections when many chats get answers

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeTelegram:
    """The Bot API side of Telegram, served from a thread; use as a context manager."""

    def __init__(self, token: str = TOKEN, bot_username: str = "nanobot_test_bot") -> None:
        self.token = token
        self.bot_username = bot_username
        self.api_base = ""
        self.sent: list[dict] = []
        self.documents: list[dict] = []  # sendDocument uploads: chat_id, name, data
        self.calls: list[str] = []
        self.requests: list[tuple[str, dict]] = []
        self.actions: list[dict] = []
        self.proxied = False
        self._cond = threading.Condition()
        self._updates: list[dict] = []
        self._ids = itertools.count(700_000)
        self._message_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._files: dict[str, tuple[str, bytes, int]] = {}  # file_id → (file_path, data, size)
        self._faults: dict[str, deque] = defaultdict(deque)
        self._poll_gen = 0
        self._closing = False
        self._server: ThreadingHTTPServer | None = None
        self.edits: list[dict] = []  # accepted editMessageText calls, like `sent`
        self.deleted: list[dict] = []
        self.commands: list | None = None  # the last setMyCommands list
        self._texts: dict[int, str] = {}  # message_id → the visible text sent or edited
        # Called with each accepted sendMessage before its answer goes out (fault injection).
        self.on_sent: Callable[[dict], None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FakeTelegram:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.api_base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---- test helpers ---------------------------------------------------------------------

    def push_update(self, update: dict) -> int:
        """Queue a raw update (an update_id is added when missing); returns its update_id."""
        with self._cond:
            update.setdefault("update_id", next(self._ids))
            self._updates.append(update)
            self._cond.notify_all()
            return update["update_id"]

    def add_file(self, data: bytes, folder: str, suffix: str, size: int | None = None) -> dict:
        """Store a downloadable file; returns its File object (size may be declared falsely)."""
        n = next(self._file_ids)
        file_id, file_path = f"FILE{n:06d}", f"{folder}/file_{n}{suffix}"
        declared = len(data) if size is None else size
        with self._cond:
            self._files[file_id] = (file_path, data, declared)
        return {"file_id": file_id, "file_unique_id": f"U{n}", "file_size": declared}

    def push_message(
        self,
        user_id: int,
        text: str | None = None,
        username: str | None = None,
        chat_id: int | None = None,
        chat_type: str = "private",
        photo: bytes | None = None,
        document: bytes | None = None,
        voice: bytes | None = None,
        *,
        file_name: str = "document.pdf",
        mime_type: str = "application/pdf",
        file_size: int | None = None,
        edited: bool = False,
    ) -> int:
        """Queue a message from user_id (in chat_id, default the private chat with the user).

        With media, text becomes the caption. file_size overrides the declared size of the
        document/voice/photo (to test a sender that lies about it). Returns the update_id.
        """
        sender = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        if username:
            sender["username"] = username
        cid = user_id if chat_id is None else chat_id
        msg: dict = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "from": sender,
            "chat": {"id": cid, "type": chat_type},
        }
        if photo is not None:
            thumb = self.add_file(photo[:64], "photos", ".jpg")
            full = self.add_file(photo, "photos", ".jpg", file_size)
            msg["photo"] = [
                {**thumb, "width": 90, "height": 60},
                {**full, "width": 1280, "height": 853},
            ]
        if document is not None:
            doc = self.add_file(document, "documents", ".pdf", file_size)
            msg["document"] = {**doc, "file_name": file_name, "mime_type": mime_type}
        if voice is not None:
            msg["voice"] = {**self.add_file(voice, "voice", ".oga", file_size), "duration": 2}
        if text is not None:
            has_media = photo is not None or document is not None or voice is not None
            msg["caption" if has_media else "text"] = text
        return self.push_update({"edited_message" if edited else "message": msg})

    def pending_updates(self) -> list[dict]:
        """Updates not yet confirmed by an offset."""
        with self._cond:
            return list(self._updates)

    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        retry_after: int | None = None,
        count: int = 1,
    ) -> None:
        with self._cond:
            for _ in range(count):
                self._faults[method].append(ApiError(status, description, retry_after))

    def drop_next(self, method: str, count: int = 1) -> None:
        with self._cond:
            self._faults[method].extend(["drop"] * count)

    def clear_faults(self, method: str | None = None) -> None:
        """Forget pending faults (of one method, or all)."""
        with self._cond:
            if method is None:
                self._faults.clear()
            else:
                self._faults.pop(method, None)

    def wait_for(self, predicate, timeout: float = 5.0, what: str = "condition"):
        """Wait (bounded) until predicate() is truthy under the lock; return its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._cond.wait(left)
            return value

    def wait_for_sent(self, n: int, timeout: float = 5.0) -> list[dict]:
        """The first n sent messages once at least n were sent (AssertionError on timeout)."""
        self.wait_for(lambda: len(self.sent) >= n, timeout, f"{n} sent message(s)")
        with self._cond:
            return list(self.sent[:n])

    def wait_for_calls(self, method: str, n: int = 1, timeout: float = 5.0) -> None:
        self.wait_for(lambda: self.calls.count(method) >= n, timeout, f"{n} {method} call(s)")

    # ---- the API --------------------------------------------------------------------------

    def _record(self, method: str, params: dict):
        with self._cond:
            self.calls.append(method)
            self.requests.append((method, params))
            self._cond.notify_all()
            return self._faults[method].popleft() if self._faults[method] else None

    def call(self, method: str, params: dict):
        handler = getattr(self, f"api_{method}", None)
        if handler is None:
            raise ApiError(404, "Not Found")
        return handler(params)

    def api_getMe(self, params: dict) -> dict:
        bot_id = int(self.token.split(":")[0])
        return {"id": bot_id, "is_bot": True, "first_name": "Test", "username": self.bot_username}

    def api_deleteWebhook(self, params: dict) -> bool:
        return True

    def api_getUpdates(self, params: dict) -> list:
        offset = int(params.get("offset", 0) or 0)
        limit = int(params.get("limit", 100) or 100)
        wait = min(float(params.get("timeout", 0) or 0), MAX_POLL_WAIT)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, str):
            allowed = json.loads(allowed)
        deadline = time.monotonic() + wait
        with self._cond:
            self._poll_gen += 1
            gen = self._poll_gen
            self._cond.notify_all()
            if offset:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while True:
                if gen != self._poll_gen:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that "
                        "only one bot instance is running",
                    )
                ready = [u for u in self._updates if not allowed or set(u) & {*allowed}]
                left = deadline - time.monotonic()
                if ready or left <= 0 or self._closing:
                    return ready[:limit]
                self._cond.wait(left)

    def api_sendMessage(self, params: dict) -> dict:
        chat_id, text = params.get("chat_id"), params.get("text")
        if chat_id in (None, ""):
            raise ApiError(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        visible = text
        if str(params.get("parse_mode", "")).upper() == "HTML":
            try:
                visible = visible_html(text)
            except BadHTML as e:
                raise ApiError(400, f"Bad Request: can't parse entities: {e}") from None
        if _utf16(visible) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "text": visible,
        }
        with self._cond:
            self._texts[message["message_id"]] = visible
            self.sent.append(
                {**params, "chat_id": str(chat_id), "visible": visible, "at": time.monotonic()}
            )
            self._cond.notify_all()
        if self.on_sent is not None:
            self.on_sent(self.sent[-1])
        return message

    def _visible(self, params: dict) -> str:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        visible = text
        if str(params.get("parse_mode", "")).upper() == "HTML":
            try:
                visible = visible_html(text)
            except BadHTML as e:
                raise ApiError(400, f"Bad Request: can't parse entities: {e}") from None
        if _utf16(visible) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return visible

    def api_editMessageText(self, params: dict) -> dict:
        mid = int(params.get("message_id") or 0)
        visible = self._visible(params)
        with self._cond:
            if mid not in self._texts:
                raise ApiError(400, "Bad Request: message to edit not found")
            if self._texts[mid] == visible:
                raise ApiError(
                    400,
                    "Bad Request: message is not modified: specified new message content and "
                    "reply markup are exactly the same as a current content and reply markup "
                    "of the message",
                )
            self._texts[mid] = visible
            edit = {**params, "chat_id": str(params.get("chat_id")), "visible": visible}
            self.edits.append({**edit, "at": time.monotonic()})
            self._cond.notify_all()
        return {"message_id": mid, "chat": {"id": params.get("chat_id")}, "text": visible}

    def api_deleteMessage(self, params: dict) -> bool:
        with self._cond:
            self._texts.pop(int(params.get("message_id") or 0), None)
            self.deleted.append(dict(params))
            self._cond.notify_all()
        return True

    def api_setMyCommands(self, params: dict) -> bool:
        commands = params.get("commands")
        if isinstance(commands, str):
            commands = json.loads(commands)
        with self._cond:
            self.commands = commands
        return True

    def api_sendDocument(self, params: dict) -> dict:
        doc = params.get("document")
        if not isinstance(doc, tuple) or not params.get("chat_id"):
            raise ApiError(400, "Bad Request: there is no document in the request")
        with self._cond:
            self.documents.append(
                {"chat_id": str(params["chat_id"]), "name": doc[0], "data": doc[1]}
            )
            self._cond.notify_all()
        return {"message_id": next(self._message_ids), "document": {"file_name": doc[0]}}

    def api_sendChatAction(self, params: dict) -> bool:
        with self._cond:
            self.actions.append(
                {"chat_id": str(params.get("chat_id")), "action": params.get("action")}
            )
            self._cond.notify_all()
        return True

    def api_getFile(self, params: dict) -> dict:
        with self._cond:
            entry = self._files.get(str(params.get("file_id")))
        if entry is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        file_path, _, size = entry
        return {"file_id": params["file_id"], "file_size": size, "file_path": file_path}

    def file_bytes(self, file_path: str) -> bytes | None:
        with self._cond:
            return next((d for p, d, _ in self._files.values() if p == file_path), None)


def _multipart(ctype: str, raw: bytes) -> dict:
    """Form fields of a multipart/form-data body; a file field becomes (filename, bytes)."""
    msg = email.message_from_bytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
    out: dict = {}
    for part in msg.get_payload() if msg.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        out[name] = (filename, data) if filename else data.decode()
    return out


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTelegram
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no delayed-ACK stall between headers and body

    def log_message(self, format, *args):  # keep test output clean
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._reply(status, json.dumps(obj).encode())

    def _params(self, query: str) -> dict:
        params: dict = dict(parse_qsl(query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if raw and "multipart/form-data" in ctype:
            params.update(_multipart(ctype, raw))
        elif raw and "json" in ctype:
            params.update(json.loads(raw))
        elif raw:
            params.update(parse_qsl(raw.decode()))
        return params

    def _route(self) -> tuple[str, str, str] | None:
        url = urlsplit(self.path)
        if url.scheme:
            self.fake.proxied = True
        path = unquote(url.path)
        for kind, prefix in (
            ("file", f"/file/bot{self.fake.token}/"),
            ("api", f"/bot{self.fake.token}/"),
        ):
            if path.startswith(prefix):
                return kind, path[len(prefix) :], url.query
        return None

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.shutdown(2)

    def do_POST(self) -> None:
        route = self._route()
        params = self._params(route[2] if route else "")
        if route is None or route[0] != "api":
            self._json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        method = route[1]
        fault = self.fake._record(method, params)
        if fault == "drop":
            self._drop()
            return
        try:
            if fault is not None:
                raise fault
            result = self.fake.call(method, params)
        except ApiError as e:
            body = {"ok": False, "error_code": e.status, "description": e.description}
            if e.retry_after is not None:
                body["parameters"] = {"retry_after": e.retry_after}
            self._json(e.status, body)
            return
        self._json(200, {"ok": True, "result": result})

    def do_GET(self) -> None:
        route = self._route()
        if route is None or route[0] != "file":
            self.do_POST()
            return
        fault = self.fake._record("file", {"file_path": route[1]})
        if fault == "drop":
            self._drop()
            return
        data = self.fake.file_bytes(route[1])
        if isinstance(fault, ApiError):
            self._reply(fault.status, fault.description.encode(), "text/plain")
        elif data is None:
            self._reply(404, b"Not Found", "text/plain")
        else:
            self._reply(200, data, "application/octet-stream")
