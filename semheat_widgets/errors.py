"""The one exception type users see: a clear, one-line message about bad input."""


class SemheatError(Exception):
    """Bad input or state, explained in one line (the CLI prints it and exits non-zero)."""


class SchemaVersionError(SemheatError):
    """A bundle written by an incompatible version of the format."""


class SemheatTypeError(SemheatError, TypeError):
    """An argument of the wrong type (also a :class:`TypeError`, as Python code expects)."""


class SemheatValueError(SemheatError, ValueError):
    """An argument of the right type but an unusable value (also a :class:`ValueError`)."""


class SemheatIndexError(SemheatError, IndexError):
    """A record index outside the bundle (also an :class:`IndexError`)."""
