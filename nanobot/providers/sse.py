"""Server-sent events from a streamed HTTP body: (event name, data text) pairs as they arrive."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def iter_events(chunks: Iterable[bytes]) -> Iterator[tuple[str, str]]:
    """Split byte chunks into SSE events (https://html.spec.whatwg.org/#event-stream-interpretation).

    Yields (event, data): event is "" when the server names none ("message" in the spec),
    data is the event's data lines joined by "\\n". Comment lines (": ping") and fields other
    than event/data are skipped; an event without data is not yielded. A last event without
    its closing blank line is still yielded when the body ends.
    """
    buffer = b""
    event, data = "", []
    for chunk in chunks:
        if not chunk:
            continue
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if data:
                    yield event, "\n".join(data)
                event, data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    tail = buffer.rstrip(b"\r").decode("utf-8", errors="replace")
    if tail.startswith("data:"):
        data.append(tail[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)
