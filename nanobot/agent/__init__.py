"""The agent: context, sessions and the one turn function."""
