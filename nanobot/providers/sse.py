"""Server-sent events from a streamed HTTP body: (event name, data text) pairs as they arrive."""

from __future__ import annotations


class EventSplitter:
    """Splits byte chunks into SSE events (https://html.spec.whatwg.org/#event-stream-interpretation).

    feed(chunk) returns the events the chunk completed, end() the last one when the body ended
    without its closing blank line. An event is (event, data): event is "" when the server names
    none ("message" in the spec), data is the event's data lines joined by "\\n". Comment lines
    (": ping") and fields other than event/data are skipped; an event without data is dropped.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        if not chunk:
            return []
        out = []
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if self._data:
                    out.append((self._event, "\n".join(self._data)))
                self._event, self._data = "", []
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    self._data.append(value)
                elif name == "event":
                    self._event = value
        return out

    def end(self) -> list[tuple[str, str]]:
        tail = self._buffer.rstrip(b"\r").decode("utf-8", errors="replace")
        self._buffer = b""
        if tail.startswith("data:"):
            self._data.append(tail[5:].removeprefix(" "))
        event, data = self._event, self._data
        self._event, self._data = "", []
        return [(event, "\n".join(data))] if data else []
