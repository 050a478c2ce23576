"""The one agent turn: context → provider → tool calls → … → final text. Every caller uses it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from nanobot.agent import compaction, textcalls
from nanobot.agent.context import ContextBuilder
from nanobot.agent.media import request_content, user_text
from nanobot.agent.progress import TurnProgress, rest_to_show, tool_hint
from nanobot.agent.sessions import SessionStore
from nanobot.agent.turn import Turn, TurnCancelled, assistant_with_calls, stream_chat
from nanobot.config.schema import AgentDefaults
from nanobot.errors import ProviderError
from nanobot.providers.base import LLMResponse, Provider, ToolCall
from nanobot.route.message import InboundMessage
from nanobot.security.redact import redact
from nanobot.tools.base import ToolContext
from nanobot.tools.registry import ToolRegistry

log = logging.getLogger("nanobot.agent")

FAILURE_PREFIX = "Sorry — "  # a reply starting so is a failed turn (the CLI exits 1)
CANCELLED = "(cancelled)"
RESET_REPLY = "Done: this conversation starts afresh. (The old history is kept on disk.)"
HELP_REPLY = (
    "Commands:\n"
    "/reset — start a new conversation (the old one is kept on disk)\n"
    "/compact — summarise the older part of this conversation now\n"
    "/help — this list\n"
    "Anything else goes to the assistant."
)
CONTINUE_PROMPT = "Continue exactly where your previous answer stopped, without repeating it."
EMPTY_NUDGE = "Your last answer was empty. Answer my last message now, in plain text."
TEXT_CALL_NUDGE = (
    "Your last answer held a tool call written as text that could not run ({why}). Use the "
    "tool-calling interface with one of these tools: {tools} — or answer in plain text."
)
FINAL_NUDGE = "Stop calling tools now and answer my last message with what you have."
EMPTY_REPLY = "(The model gave no answer, even when asked again. Try rephrasing, or /reset.)"
STUCK_REPLY = (
    "(The model kept calling {name} with the same arguments instead of answering, so I "
    "stopped. Try rephrasing, or /reset.)"
)


def turn_failed(reply: str) -> bool:
    """Whether a turn's reply says that the turn failed (provider error, empty, stuck)."""
    return reply.startswith(FAILURE_PREFIX) or reply in (EMPTY_REPLY, CANCELLED)


@dataclass
class Agent:
    """What a turn needs. One instance serves every session; per-turn state lives in Turn."""

    settings: AgentDefaults
    provider: Provider
    model: str
    tools: ToolRegistry
    sessions: SessionStore
    context: ContextBuilder

    async def handle(self, msg: InboundMessage, ctx: ToolContext) -> str:
        """A user message: `/reset`, `/help`, idle expiry, then a turn."""
        key, text = ctx.session_key, msg.content
        command = text.strip().lower()
        if command in ("/reset", "/new"):
            self.sessions.reset(key)
            log.info("session %s reset by %s", key, ctx.sender_id)
            return RESET_REPLY
        if command == "/help":
            return HELP_REPLY
        if command == "/compact":
            return await compaction.compact_now(self, key)
        idle = self.settings.session_idle_minutes
        last = self.sessions.last_activity(key) if idle else None
        if last is not None and time.time() - last > idle * 60:
            self.sessions.reset(key, reason="idle")
            log.info("session %s idle for over %d minutes: starting afresh", key, idle)
        return await self.run_turn(text, ctx, msg.media)

    async def run_turn(self, text: str, ctx: ToolContext, media: list[str] = ()) -> str:
        """One turn. Its messages are stored only when it ends with an answer: a failed or
        cancelled turn leaves the session as it was."""
        turn = await self._start(text, ctx, list(media))
        try:
            for _ in range(self.settings.max_tool_iterations):
                reply = await self._ask(turn)
                calls, answer = self._calls_in(turn, reply)
                if calls and turn.guard.persisting:
                    return self._failed(turn, STUCK_REPLY.format(name=turn.guard.persisting))
                if calls:
                    await self._run_tools(turn, reply, calls, ctx)
                    if turn.guard.persisting:
                        turn.nudge(FINAL_NUDGE)
                elif answer.strip() or turn.nudged:
                    return await self._answer(turn, reply, answer)
                else:
                    self._ask_again(turn)
            return await self._finish(turn, self._out_of_steps())
        except ProviderError as e:
            log.error("LLM call failed for session %s (%s): %s", turn.key, e.kind, e)
            return self._failed(turn, FAILURE_PREFIX + e.user_message)
        except TurnCancelled:
            log.info("turn for %s cancelled; nothing stored", turn.key)
            return CANCELLED

    async def _start(self, text: str, ctx: ToolContext, media: list[str]) -> Turn:
        stored = user_text(text, media)
        messages = await compaction.with_history(
            self, ctx.session_key, lambda h: self.context.build(h, stored, ctx.channel, ctx.chat_id)
        )
        messages[-1]["content"] = request_content(stored, media, self.model)
        user = {"role": "user", "content": stored}
        progress = ctx.progress or TurnProgress()
        return Turn(ctx.session_key, messages, [user], progress, len(messages) - 1)

    async def _ask(self, turn: Turn, tools: bool = True) -> LLMResponse:
        """One model call; a context overflow trims the turn and is retried once."""
        definitions = self.tools.definitions() if tools else None
        try:
            return await stream_chat(turn, definitions, self._call)
        except ProviderError as e:
            if e.kind != "context_length" or turn.trimmed:
                raise
            log.warning("session %s: over the model's context; retrying trimmed once", turn.key)
            turn.trim()
            return await stream_chat(turn, definitions, self._call)

    async def _call(self, messages, definitions, on_delta) -> LLMResponse:
        s = self.settings
        return await self.provider.chat(
            messages, definitions or None, self.model, s.max_tokens, s.temperature, on_delta
        )

    def _calls_in(self, turn: Turn, reply: LLMResponse) -> tuple[list[ToolCall], str]:
        """The reply's tool calls (real ones, else those written as text) and its answer text
        (with anything call-shaped removed; `turn.refused` says why such parts did not run)."""
        if reply.tool_calls:
            return reply.tool_calls, reply.content or ""
        found = textcalls.extract(reply.content or "", self._schema_of)
        turn.refused = found.refused
        if found.calls:
            log.info("session %s: ran %d tool call(s) written as text", turn.key, len(found.calls))
        return found.calls, found.text

    def _ask_again(self, turn: Turn) -> None:
        """No answer and no runnable call: ask once more, saying what was wrong."""
        turn.nudged = True
        if turn.refused:
            why = "; ".join(turn.refused)
            log.info("session %s: a tool call written as text was refused: %s", turn.key, why)
            turn.nudge(TEXT_CALL_NUDGE.format(why=why, tools=", ".join(self.tools.names())))
        else:
            log.info("session %s: empty answer; asking once more", turn.key)
            turn.nudge(EMPTY_NUDGE)

    def _schema_of(self, name: str) -> dict | None:
        tool = self.tools.get(name)
        return None if tool is None else tool.parameters

    async def _run_tools(
        self, turn: Turn, reply: LLMResponse, calls: list[ToolCall], ctx: ToolContext
    ) -> None:
        turn.discard_shown()
        content = (reply.content or "") if reply.tool_calls else ""
        step = [assistant_with_calls(content, calls)]
        for call in calls:
            turn.check_cancelled()
            turn.progress.step(tool_hint(call.name, call.arguments))
            result = turn.guard.answer(call)
            if result is None:
                result = (await self.tools.call(call.name, call.arguments, ctx)).text
                turn.guard.record(call, result)
            step.append({"role": "tool", "tool_call_id": call.id, "content": result})
        turn.add(*step)

    async def _answer(self, turn: Turn, reply: LLMResponse, text: str) -> str:
        if not text.strip():
            return self._failed(turn, EMPTY_REPLY)
        return await self._finish(turn, await self._complete(turn, reply, text))

    async def _complete(self, turn: Turn, reply: LLMResponse, text: str) -> str:
        """The answer's text; an answer cut at maxTokens is continued once, then marked cut."""
        if reply.finish_reason != "length":
            return text
        turn.messages.append({"role": "assistant", "content": text})
        turn.nudge(CONTINUE_PROMPT)
        try:
            rest = await self._ask(turn, tools=False)
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

    async def _finish(self, turn: Turn, text: str) -> str:
        """Store the turn with its answer and show what the stream has not shown yet."""
        final = redact(text)
        turn.add({"role": "assistant", "content": final})
        await asyncio.to_thread(self.sessions.append, turn.key, *turn.added)
        rest = rest_to_show(final, turn.shown)
        if rest:
            turn.progress.text(rest)
        return final

    def _failed(self, turn: Turn, reply: str) -> str:
        """A turn without an answer: nothing is stored, so the next turn starts clean."""
        log.warning("session %s: turn ended without an answer: %s", turn.key, reply)
        return reply

    def _out_of_steps(self) -> str:
        return (
            f"I stopped after {self.settings.max_tool_iterations} tool steps without finishing "
            "(agents.defaults.maxToolIterations). Tell me how to continue."
        )
