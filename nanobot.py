#!/usr/bin/env python3
"""Launcher: `python3 nanobot.py …` runs the CLI from a checkout without installing."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nanobot.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
