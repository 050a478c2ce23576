"""`python -m nanobot …` entry point."""

import sys

from nanobot.cli import main

sys.exit(main())
