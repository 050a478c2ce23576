"""The one agent turn: context → provider → tool calls → … → final text. Every caller uses it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from nanobot.agent.context import ContextBuilder
from nanobot.agent.media import request_content, user_text
from nanobot.agent.sessions import SessionStore
from nanobot.config.schema import AgentDefaults
from nanobot.errors import ProviderError
from nanobot.providers.base import LLMResponse, Provider
from nanobot.route.message import InboundMessage
from nanobot.security.redact import redact
from nanobot.tools.base import ToolContext
from nanobot.tools.registry import ToolRegistry

log = logging.getLogger("nanobot.agent")

APOLOGY = "Sorry, I could not reach the language model just now. Please try again in a moment."
RESET_REPLY = "Done: this conversation starts afresh. (The old history is kept on disk.)"
CONTINUE_PROMPT = "Continue exactly where your previous answer stopped, without repeating it."


@dataclass
class Agent:
    """What a turn needs. One instance serves every session; per-turn state lives in ToolContext."""

    settings: AgentDefaults
    provider: Provider
    model: str
    tools: ToolRegistry
    sessions: SessionStore
    context: ContextBuilder
    executor: ThreadPoolExecutor

    async def handle(self, msg: InboundMessage, ctx: ToolContext) -> str:
        """A user message: `/reset`, idle expiry, then a turn."""
        key, text = ctx.session_key, msg.content
        if text.strip().lower() in ("/reset", "/new"):
            self.sessions.reset(key)
            log.info("session %s reset by %s", key, ctx.sender_id)
            return RESET_REPLY
        idle = self.settings.session_idle_minutes
        last = self.sessions.last_activity(key) if idle else None
        if last is not None and time.time() - last > idle * 60:
            self.sessions.reset(key, reason="idle")
            log.info("session %s idle for over %d minutes: starting afresh", key, idle)
        return await self.run_turn(text, ctx, msg.media)

    async def run_turn(self, text: str, ctx: ToolContext, media: list[str] = ()) -> str:
        key = ctx.session_key
        s = self.settings
        stored = user_text(text, list(media))
        user = {"role": "user", "content": stored}
        history = await asyncio.to_thread(
            self.sessions.tail_then_append, key, s.max_history_messages, s.max_history_chars, user
        )
        messages = await asyncio.to_thread(
            self.context.build, history, stored, ctx.channel, ctx.chat_id
        )
        messages[-1]["content"] = request_content(stored, list(media), self.model)
        definitions = self.tools.definitions()
        for _ in range(s.max_tool_iterations):
            try:
                reply = await self._chat(messages, definitions)
            except ProviderError as e:
                log.error("LLM call failed for session %s: %s", key, e)
                return APOLOGY
            if not reply.tool_calls:
                final = redact(await self._complete(messages, reply))
                await asyncio.to_thread(
                    self.sessions.append, key, {"role": "assistant", "content": final}
                )
                return final
            step = [_assistant_with_calls(reply)]
            for call in reply.tool_calls:
                result = await self.tools.call(call.name, call.arguments, ctx)
                step.append({"role": "tool", "tool_call_id": call.id, "content": result.text})
            messages.extend(step)
            await asyncio.to_thread(self.sessions.append, key, *step)
        final = (
            f"I stopped after {s.max_tool_iterations} tool steps without finishing "
            "(agents.defaults.maxToolIterations). Tell me how to continue."
        )
        self.sessions.append(key, {"role": "assistant", "content": final})
        return final

    async def _complete(self, messages: list[dict[str, Any]], reply: LLMResponse) -> str:
        """The answer's text; an answer cut at maxTokens is continued once, then marked cut."""
        text = reply.content or ""
        if reply.finish_reason != "length":
            return text
        more = [*messages, {"role": "assistant", "content": text}]
        more.append({"role": "user", "content": CONTINUE_PROMPT})
        try:
            rest = await self._chat(more, [])
        except ProviderError as e:
            log.warning("could not continue an answer cut at maxTokens: %s", e)
            rest = LLMResponse(content="", tool_calls=[], finish_reason="length")
        text += rest.content or ""
        if rest.finish_reason == "length":
            text += (
                f"\n\n(The answer was cut at {self.settings.max_tokens} tokens — "
                "raise agents.defaults.maxTokens for longer answers.)"
            )
        return text

    async def _chat(self, messages: list[dict[str, Any]], definitions: list[dict[str, Any]]):
        s = self.settings
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor,
            lambda: self.provider.chat(
                messages, definitions or None, self.model, s.max_tokens, s.temperature
            ),
        )


def _assistant_with_calls(reply) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": reply.content or "",
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": json.dumps(c.arguments, ensure_ascii=False),
                },
            }
            for c in reply.tool_calls
        ],
    }
