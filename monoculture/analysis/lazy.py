"""Modules imported on first use: SciPy is needed by the coordinator's release and the
researcher's tools, not by a company daemon, which imports this package only for the
release policy and the budget arithmetic (SciPy would add ~65 MiB to its resident memory).

Thread-safe: the coordinator releases rounds on several threads at once. (The standard
library's `importlib.util.LazyLoader` is not, on Python 3.11: two threads touching a
module it is loading saw it half-initialised — "module 'scipy.optimize' has no attribute
'brentq'" when three rounds were counted together.)
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module `name` and imports it when one of its attributes is first used."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None
        self._lock = threading.Lock()

    def _load(self) -> ModuleType:
        with self._lock:
            if self._module is None:
                self._module = importlib.import_module(self._name)
            return self._module

    def __getattr__(self, attribute: str) -> Any:
        module = self._module if self._module is not None else self._load()
        return getattr(module, attribute)


def lazy_import(name: str) -> Any:
    """`name`, imported on first use."""
    return LazyModule(name)
