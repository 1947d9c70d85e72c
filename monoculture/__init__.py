"""monoculture: private measurement of outcome homogenization across companies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Result", "compare", "measure"]

if TYPE_CHECKING:
    from monoculture.research.api import compare, measure
    from monoculture.research.result import Result


def __getattr__(name: str) -> Any:
    """`monoculture.measure` and `monoculture.Result`, imported on first use (the daemons and the
    command line import this package and need neither)."""
    if name == "measure":
        from monoculture.research.api import measure

        return measure
    if name == "compare":
        from monoculture.research.api import compare

        return compare
    if name == "Result":
        from monoculture.research.result import Result

        return Result
    raise AttributeError(f"module 'monoculture' has no attribute {name!r}")
