"""The config schema as dataclasses; field names are snake_case, JSON keys camelCase.

Field metadata understood by the loader (nanobot.config.codec):
  secret:  value may be "${NAME}" or "file:PATH" and is registered for redaction
  min/max: numeric range;  choices: allowed strings;  raw_keys: dict keys kept as written
"""

from __future__ import annotations

from dataclasses import dataclass, field

# No generated __repr__ (it would print secrets) and no __eq__ (nothing compares configs): each
# generated method is compiled at import, and this module is imported by every command.
section = dataclass(repr=False, eq=False)


def _f(default=None, factory=None, **meta):
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@section
class ProviderConfig:
    api_key: str = _f("", secret=True)
    api_base: str = ""
    extra_headers: dict[str, str] = _f(factory=dict, raw_keys=True, secret=True)
    # Seconds the server may stay silent: between two chunks of a streamed answer, or for
    # the whole answer when not streaming. A read timeout is never retried.
    timeout: float = _f(120.0, min=1.0, max=3600.0)
    connect_timeout: float = _f(10.0, min=0.5, max=300.0)
    stream: bool = True  # false: one plain request per answer (servers that cannot stream)
    context_window: int = _f(0, min=0, max=10_000_000)  # tokens; 0 = ask a local server


@section
class ProvidersConfig:
    anthropic: ProviderConfig = _f(factory=ProviderConfig)
    openai: ProviderConfig = _f(factory=ProviderConfig)
    openrouter: ProviderConfig = _f(factory=ProviderConfig)
    deepseek: ProviderConfig = _f(factory=ProviderConfig)
    groq: ProviderConfig = _f(factory=ProviderConfig)
    zhipu: ProviderConfig = _f(factory=ProviderConfig)
    dashscope: ProviderConfig = _f(factory=ProviderConfig)
    moonshot: ProviderConfig = _f(factory=ProviderConfig)
    gemini: ProviderConfig = _f(factory=ProviderConfig)
    vllm: ProviderConfig = _f(factory=ProviderConfig)
    ollama: ProviderConfig = _f(factory=ProviderConfig)
    aihubmix: ProviderConfig = _f(factory=ProviderConfig)
    custom: ProviderConfig = _f(factory=ProviderConfig)


@section
class ExecConfig:
    timeout: int = _f(60, min=1, max=3600)
    sandbox: str = _f("auto", choices=("auto", "bwrap", "none"))
    # true: the host's network; false: none; "allowlist": only tools.exec.allowedDomains,
    # through the gateway's egress proxy (nanobot.security.egress; needs bubblewrap)
    network: bool | str = _f(True, choices=("allowlist",))
    allowed_domains: list[str] = _f(factory=list)  # "example.com", "*.example.com"
    max_output_chars: int = _f(10_000, min=100, max=1_000_000)
    extra_ro_binds: list[str] = _f(factory=list)
    extra_rw_binds: list[str] = _f(factory=list)


@section
class WebSearchConfig:
    # "" = brave when apiKey is set, else searxng when url is set, else duckduckgo (no key)
    provider: str = _f("", choices=("brave", "searxng", "duckduckgo"))
    api_key: str = _f("", secret=True)  # Brave Search API key
    max_results: int = _f(5, min=1, max=20)
    # The back-end's address: required for searxng (the instance, e.g. http://127.0.0.1:8888);
    # brave and duckduckgo use their public endpoint when empty.
    url: str = ""
    base_url: str = ""  # nanobot's key for url
    timeout: float = _f(15.0, min=1.0, max=120.0)


@section
class WebFetchConfig:
    max_bytes: int = _f(2_000_000, min=1024, max=50_000_000)  # body bytes read, then cut
    timeout: float = _f(20.0, min=1.0, max=300.0)  # seconds for the whole fetch, all hops
    max_redirects: int = _f(5, min=0, max=20)
    max_chars: int = _f(15_000, min=500, max=200_000)  # text handed to the model


@section
class WebConfig:
    search: WebSearchConfig = _f(factory=WebSearchConfig)
    fetch: WebFetchConfig = _f(factory=WebFetchConfig)
    # CIDRs web_fetch may reach although they are not public (e.g. ["192.168.1.0/24"] for a
    # NAS). The one escape from the SSRF guard; cloud metadata addresses stay refused.
    allowed_private_networks: list[str] = _f(factory=list)


@section
class MessageToolConfig:
    # "channel:chat_id" the message tool may send to besides the current chat; each must also
    # be named in that channel's allowFrom.
    allowed_targets: list[str] = _f(factory=list)
    max_per_turn: int = _f(5, min=0, max=100)
    max_per_hour: int = _f(30, min=0, max=10_000)  # per chat


@section
class ApprovalConfig:
    # off: never ask; risky: calls matching the rules (security/approval_rules.py) and
    # tools.approval.rules wait for a person's answer; always: every call of an acting tool.
    mode: str = _f("off", choices=("off", "risky", "always"))
    rules: list[str] = _f(factory=list)  # extra patterns: "git push", "docker *", "tool:cron"
    approvers: dict[str, list[str]] = _f(factory=dict)  # channel → sender ids; default allowFrom
    require_other_approver: bool = False  # the requester's own answer does not count
    timeout_seconds: int = _f(300, min=5, max=86_400)  # no answer by then = denied


@section
class ToolsConfig:
    restrict_to_workspace: bool = True
    # write_file/edit_file refuse a write that would leave less than this free (MiB) on the
    # filesystem that holds NANOBOT_HOME's state (sessions, inbox, audit).
    write_reserve_mb: int = _f(256, min=0, max=1_000_000)
    exec: ExecConfig = _f(factory=ExecConfig)
    web: WebConfig = _f(factory=WebConfig)
    message: MessageToolConfig = _f(factory=MessageToolConfig)
    approval: ApprovalConfig = _f(factory=ApprovalConfig)


@section
class AgentDefaults:
    workspace: str = "~/.nanobot/workspace"
    model: str = ""  # "" = the default model of the first provider that has a key
    max_tokens: int = _f(8192, min=1, max=1_000_000)
    temperature: float = _f(0.7, min=0.0, max=2.0)
    max_tool_iterations: int = _f(20, min=1, max=200)
    max_history_messages: int = _f(50, min=0, max=10_000)
    max_history_chars: int = _f(60_000, min=0, max=10_000_000)
    session_idle_minutes: int = _f(0, min=0, max=525_600)
    max_concurrent_turns: int = _f(8, min=1, max=1024)
    timezone: str = ""  # IANA zone for cron jobs and "at" times without one; "" = the host's
    heartbeat_minutes: int = _f(30, min=0, max=10_080)  # 0 = off
    max_subagents: int = _f(3, min=0, max=64)  # background tasks at once (all chats)
    max_concurrent_subagents: int = _f(0, min=0, max=64)  # nanobot's key; > 0 overrides
    subagent_max_tool_iterations: int = _f(15, min=1, max=200)
    # "shared": one person's assistant (one workspace, sessions per chat). "sender": every
    # allowed sender gets their own workspace folder (memory, skills, files) and sessions.
    isolation: str = _f("shared", choices=("shared", "sender"))


@section
class AgentsConfig:
    defaults: AgentDefaults = _f(factory=AgentDefaults)


@section
class TelegramConfig:
    enabled: bool = False
    token: str = _f("", secret=True)
    allow_from: list[str] = _f(factory=list)
    api_base: str = "https://api.telegram.org"
    proxy: str = _f("", secret=True)
    poll_timeout: int = _f(30, min=0, max=50)
    max_media_bytes: int = _f(20_000_000, min=0, max=2_000_000_000)
    # In groups every member reads the replies: "mention" answers only when the bot is
    # @mentioned or replied to, "open" answers every allowed sender, "off" ignores groups.
    group_policy: str = _f("mention", choices=("mention", "open", "off"))


@section
class WhatsAppConfig:
    enabled: bool = False
    bridge_url: str = "ws://127.0.0.1:3001"
    bridge_token: str = _f("", secret=True)
    allow_from: list[str] = _f(factory=list)
    manage_bridge: bool = True  # the gateway runs the Node.js bridge as its child


@section
class EmailConfig:
    enabled: bool = False
    consent_granted: bool = False
    allow_from: list[str] = _f(factory=list)
    imap_host: str = ""
    imap_port: int = _f(993, min=1, max=65535)
    imap_username: str = ""
    imap_password: str = _f("", secret=True)
    imap_mailbox: str = "INBOX"
    imap_use_ssl: bool = True
    smtp_host: str = ""
    smtp_port: int = _f(587, min=1, max=65535)
    smtp_username: str = ""
    smtp_password: str = _f("", secret=True)
    smtp_use_tls: bool = True
    smtp_use_ssl: bool = False
    from_address: str = ""
    auto_reply_enabled: bool = True
    poll_interval_seconds: int = _f(30, min=5, max=86_400)
    mark_seen: bool = True
    max_body_chars: int = _f(12_000, min=100, max=1_000_000)
    subject_prefix: str = "Re: "
    # Plain IMAP/SMTP without TLS (imapUseSsl false on a server without STARTTLS, or both
    # smtpUseTls and smtpUseSsl false): refused unless this is true.
    allow_insecure: bool = False
    # Sender authentication: the receiving server's Authentication-Results verdict. Only
    # headers whose authserv-id is listed here count; verifyDkim/verifySpf pick which passes
    # are accepted; both false turns sender authentication off (doctor warns).
    trusted_authserv_ids: list[str] = _f(factory=list)
    verify_dkim: bool = True
    verify_spf: bool = True
    max_attachment_size: int = _f(5_000_000, min=0, max=100_000_000)  # bytes; larger: listed only
    max_attachments_per_email: int = _f(5, min=0, max=100)
    allowed_attachment_types: list[str] = _f(
        factory=lambda: ["image/*", "application/pdf", "text/plain", "text/csv"]
    )


@section
class ChannelsConfig:
    send_progress: bool = True  # show the reply growing while it is written (nanobot's key)
    send_tool_hints: bool = False  # short "⚙ exec: …" lines for tool steps (nanobot's key)
    telegram: TelegramConfig = _f(factory=TelegramConfig)
    whatsapp: WhatsAppConfig = _f(factory=WhatsAppConfig)
    email: EmailConfig = _f(factory=EmailConfig)


@section
class HeartbeatConfig:
    enabled: bool = True  # nanobot's key
    # nanobot's key; 0 = agents.defaults.heartbeatMinutes
    interval_s: int = _f(0, min=0, max=604_800)
    channel: str = ""  # where a heartbeat's findings go; "" = the only enabled chat channel
    chat_id: str = ""  # "" = the only chat named in that channel's allowFrom


@section
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = _f(18790, min=0, max=65535)
    token: str = _f("", secret=True)
    max_body_bytes: int = _f(1_048_576, min=1024, max=100_000_000)
    header_timeout: float = _f(10.0, min=0.1, max=300.0)
    shutdown_timeout: float = _f(20.0, min=0.0, max=600.0)
    heartbeat: HeartbeatConfig = _f(factory=HeartbeatConfig)


@section
class RateLimitConfig:
    messages_per_minute: float = _f(20, min=0, max=100_000)
    burst: int = _f(5, min=0, max=100_000)
    tool_calls_per_hour: int = _f(0, min=0, max=1_000_000)


@section
class AuditConfig:
    enabled: bool = True
    max_bytes: int = _f(10_000_000, min=10_000, max=10_000_000_000)
    backup_count: int = _f(5, min=0, max=1000)


@section
class SecurityConfig:
    rate_limit: RateLimitConfig = _f(factory=RateLimitConfig)
    audit: AuditConfig = _f(factory=AuditConfig)


@section
class Config:
    agents: AgentsConfig = _f(factory=AgentsConfig)
    channels: ChannelsConfig = _f(factory=ChannelsConfig)
    providers: ProvidersConfig = _f(factory=ProvidersConfig)
    gateway: GatewayConfig = _f(factory=GatewayConfig)
    tools: ToolsConfig = _f(factory=ToolsConfig)
    security: SecurityConfig = _f(factory=SecurityConfig)
