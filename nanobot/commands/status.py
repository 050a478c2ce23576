"""`nanobot status`: where things are, which model and provider, which keys exist (never values)."""

from __future__ import annotations

import argparse
import os

from nanobot import __version__, paths
from nanobot.config.loader import ENV_KEYS, load_config, workspace_path
from nanobot.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # no options


def run(args: argparse.Namespace) -> int:
    from nanobot.providers.registry import select
    from nanobot.security.sandbox import bwrap_status

    cfg, info = load_config(args.config)
    print(f"nanobot {__version__}")
    print(f"Home:       {paths.home()}")
    print(
        f"Config:     {info.path}{'' if info.exists else ' (not found: defaults and environment)'}"
    )
    ws = workspace_path(cfg)
    print(f"Workspace:  {ws}{'' if ws.exists() else ' (not created yet)'}")
    try:
        sel = select(cfg)
        pc = sel.provider_cfg
        print(f"Model:      {sel.model} via {sel.spec.name}")
        print(f"            {sel.reason}")
        window = f", context {pc.context_window} tokens" if pc.context_window else ""
        print(
            f"            timeouts: connect {pc.connect_timeout:g} s, silence {pc.timeout:g} s; "
            f"streaming {'on' if pc.stream else 'off'}{window}"
        )
    except ConfigError as e:
        print(f"Model:      none usable — {e}")
    keyed = []
    for name in ENV_KEYS:
        prov = getattr(cfg.providers, name)
        if prov.api_key:
            source = "environment" if os.environ.get(ENV_KEYS[name]) == prov.api_key else "config"
            keyed.append(f"{name} ({source})")
    for name in ("custom", "ollama", "vllm"):
        base = getattr(cfg.providers, name).api_base
        if base:
            keyed.append(f"{name} (server at {base})")
    print(f"Providers:  {', '.join(keyed) if keyed else 'none has a key'}")
    t = cfg.tools
    print(f"Files:      restrictToWorkspace={'on' if t.restrict_to_workspace else 'OFF'}")
    ok, why = bwrap_status()
    print(
        f"Exec:       sandbox={t.exec.sandbox} (bubblewrap {'available' if ok else 'unavailable: ' + why}), "
        f"timeout={t.exec.timeout}s, network={'on' if t.exec.network else 'off'}"
    )
    for name in ("telegram", "whatsapp", "email"):
        ch = getattr(cfg.channels, name)
        if ch.enabled:
            who = f"{len(ch.allow_from)} allowed senders" if ch.allow_from else "OPEN TO EVERYONE"
            print(f"Channel:    {name} enabled, {who}")
    if cfg.channels.email.enabled:  # e-mail: its configuration (live state: /healthz)
        from nanobot.channels.email.settings import summary

        for line in summary(cfg.channels.email):
            print(f"            e-mail {line}")
    g = cfg.gateway
    print(f"Gateway:    http://{g.host}:{g.port} (token {'set' if g.token else 'not set'})")
    for w in info.warnings:
        print(f"Warning:    {w}")
    return 0
