"""Names of a package loaded on first use (module ``__getattr__``, PEP 562): importing the
package costs nothing until one of them is asked for (the engine's namespace and its stage
packages)."""

import sys
from importlib import import_module


def lazy_names(package: str, table: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package``, whose name ``n`` lives in its submodule
    ``table[n]`` (relative to it, dotted)."""

    def __getattr__(name):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)  # once loaded, a plain attribute
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
