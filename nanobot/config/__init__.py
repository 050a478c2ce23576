"""Configuration: the schema (dataclasses), the camelCase codec with secret references, the loader."""
