"""The local API with the real agent behind it and a scripted model server as the far side:
"stream": true in OpenAI's chunk format, usage, GET /v1/models, a client that hangs up."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time

import pytest

from fakes.llm_server import ScriptedLLMServer, reply, tool_call
from nanobot import workers
from nanobot.api import LocalAPI
from nanobot.channels.request import LocalAPIChannel
from nanobot.config.loader import load_config
from nanobot.config.schema import GatewayConfig
from nanobot.route.admission import Admission
from nanobot.route.dispatcher import Dispatcher
from nanobot.route.route import Route
from nanobot.route.store import Store
from nanobot.security.redact import REDACTOR

TOKEN = "tok-stream-5c1e9a7b3d"
KEY = "sk-test-stream-000000000000000"
CHAT = "/v1/chat/completions"
ANSWER = "Streaming works one word at a time here."


@pytest.fixture
def api(tmp_path, monkeypatch):
    """(LocalAPI with the real agent, scripted LLM server, NANOBOT_HOME)."""
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with ScriptedLLMServer("openai") as llm:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
        from nanobot.runtime import build_agent

        cfg, info = load_config()
        agent = build_agent(cfg, info)
        channels: dict = {}

        async def build():
            dispatcher = Dispatcher(agent.handle, Store(tmp_path / "state"), channels, 8)
            route = Route(Admission(None), dispatcher.store, dispatcher.submit)
            channels["http"] = LocalAPIChannel(None, route)

        asyncio.run_coroutine_threadsafe(build(), loop).result(5)
        gcfg = GatewayConfig(host="127.0.0.1", port=0, token=TOKEN)
        server = LocalAPI(gcfg, loop, channels["http"], lambda: {"status": "ok"}, 30)
        server.start()
        yield server, llm, agent
        server.stop()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()
    workers.shutdown()
    REDACTOR.clear()


def post(api, body, token=TOKEN):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
    conn.request("POST", CHAT, json.dumps(body), {"Authorization": f"Bearer {token}"})
    return conn, conn.getresponse()


def events(resp) -> list[tuple[float, object]]:
    """(arrival time, parsed data) of each server-sent event until the stream ends."""
    out = []
    for raw in resp:
        line = raw.decode().strip()
        if line.startswith("data: "):
            data = line[6:]
            out.append((time.monotonic(), data if data == "[DONE]" else json.loads(data)))
    return out


def content(evs) -> str:
    return "".join(
        c["delta"].get("content") or "" for _, e in evs if e != "[DONE]" for c in e["choices"]
    )


def test_stream_sends_openai_chunks_as_the_answer_is_written(api):
    server, llm, _ = api
    llm.script([reply(ANSWER, chunk_delay=0.05)])
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "user": "s1"}
    body["stream_options"] = {"include_usage": True}
    conn, resp = post(server, body)
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    evs = events(resp)
    conn.close()
    assert evs[-1][1] == "[DONE]"
    chunks = [e for _, e in evs[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content(evs) == ANSWER
    texts = [t for t, e in evs if e != "[DONE]" and e["choices"] and e["choices"][0]["delta"]]
    assert len(texts) > 4 and texts[-1] - texts[1] > 0.2  # pieces came while it was written
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish[0]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_hides_a_tool_call_written_as_text(api):
    server, llm, _ = api
    written = 'Let me look.\n{"name": "list_dir", "arguments": {"path": "."}}'
    llm.script([reply(written, chunk_delay=0.01), reply("There is a workspace.")])
    body = {"messages": [{"role": "user", "content": "what is here?"}], "stream": True}
    conn, resp = post(server, body)
    text = content(events(resp))
    conn.close()
    assert '"name"' not in text and "arguments" not in text
    assert text.endswith("There is a workspace.")


def test_plain_request_fills_usage_from_the_provider(api):
    server, llm, _ = api
    llm.script([tool_call("list_dir", {}), reply("done")])
    conn, resp = post(server, {"messages": [{"role": "user", "content": "list"}]})
    body = json.loads(resp.read())
    conn.close()
    assert body["choices"][0]["message"]["content"] == "done"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_models_lists_the_agent_and_needs_the_token(api):
    server, _, _ = api
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["nanobot"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/v1/models")
    assert conn.getresponse().status == 401
    conn.close()


def test_a_client_that_hangs_up_cancels_the_turn(api):
    server, llm, agent = api
    llm.script([reply("word " * 400, chunk_delay=0.02)])
    body = json.dumps(
        {"messages": [{"role": "user", "content": "long"}], "stream": True, "user": "gone"}
    ).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    seen = b""
    while b"chat.completion.chunk" not in seen:
        seen += sock.recv(65536) or b"(closed)"
        assert b"(closed)" not in seen
    sock.close()
    llm.script([reply("next answer")])
    started = time.monotonic()
    conn, resp = post(server, {"messages": [{"role": "user", "content": "next"}], "user": "gone"})
    assert json.loads(resp.read())["choices"][0]["message"]["content"] == "next answer"
    conn.close()
    assert time.monotonic() - started < 4  # not queued behind the 8 s answer
    lines = agent.sessions.path("http:gone").read_text().splitlines()
    assert [json.loads(line)["content"] for line in lines] == ["next", "next answer"]
