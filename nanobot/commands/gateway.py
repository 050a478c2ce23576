"""`nanobot gateway`: run the channels, the agent and the local HTTP API until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from nanobot.config.loader import load_config
from nanobot.logs import setup_logging
from nanobot.security.privileges import refuse_root


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--port", type=int, default=None, help="local API port (gateway.port)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--allow-root", action="store_true", help="run even as root (not recommended)")


def run(args: argparse.Namespace) -> int:
    refuse_root(args.allow_root)
    from nanobot import memtune

    memtune.restart_without_thread_caches()  # first: it starts this command again
    setup_logging(verbose=args.verbose, stderr=True)
    from nanobot.gateway import Gateway

    memtune.tune_malloc()  # before the first worker thread

    cfg, info = load_config(args.config)
    if args.port is not None:
        cfg.gateway.port = args.port
    code = asyncio.run(Gateway(cfg, info).serve())
    # A channel's long poll may still block a worker thread for up to its timeout; nothing is
    # left to do, so leave without waiting for it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
