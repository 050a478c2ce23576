"""LLM providers over plain HTTPS: OpenAI-compatible Chat Completions and Anthropic Messages."""
