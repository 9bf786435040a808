"""The one exception type users see: a clear, one-line message about bad input."""


class SemheatError(Exception):
    """Bad input or state, explained in one line (the CLI prints it and exits non-zero)."""


class SchemaVersionError(SemheatError):
    """A bundle written by an incompatible version of the format."""
