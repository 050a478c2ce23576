"""nanobot: a personal AI assistant that is safe to leave running on a server."""

__version__ = "0.1.0"
