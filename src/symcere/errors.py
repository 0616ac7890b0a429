"""The one error type a user sees: a message that says what was wrong and where, never a deep traceback."""


class SymcereError(Exception):
    """A user-facing error; the CLI prints its message (no traceback) and exits with status 2."""


class ConfigError(SymcereError, ValueError):
    """An invalid combination of configuration values (also a ``ValueError`` for library callers)."""
