"""regopy, with its calls into the interpreter holding the GIL.

regopy binds rego-cpp with `ctypes.CDLL`, whose every call releases the GIL and takes it back on
return. A decision makes a few dozen such calls (one per value of its input, then the query and
its output); in a server whose other threads run Python, each return waits for the GIL, and a
decision of 0.4 ms takes 1.5 ms. The same library loaded with `ctypes.PyDLL` keeps the GIL through
each call: calls of microseconds, and a query of a few hundred, for which no other thread could do
much anyway. This swaps every function regopy bound for the same function of a `PyDLL`; when
regopy's layout is not the one expected, nothing is swapped and decisions are only slower.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from types import ModuleType

__all__ = ["hold_gil"]

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_DONE: list[bool] = []


def hold_gil() -> bool:
    """Make regopy's calls hold the GIL (once per process); whether they do."""
    with _LOCK:
        if not _DONE:
            _DONE.append(_swap())
        return _DONE[0]


def _swap() -> bool:
    try:
        import regopy.interpreter
        import regopy.node
        import regopy.output
        import regopy.rego_shared as shared
    except ImportError:
        return False
    released = getattr(shared, "rego", None)
    path = getattr(shared, "path", None)
    if not isinstance(released, ctypes.CDLL) or isinstance(released, ctypes.PyDLL) or not isinstance(path, str):
        logger.debug("regopy's layout is not the expected one: its calls release the GIL")
        return isinstance(released, ctypes.PyDLL)
    held = ctypes.PyDLL(path)
    function_type = getattr(ctypes, "_CFuncPtr")  # noqa: B009 (not in ctypes' stubs)
    swaps: dict[int, object] = {}
    for name, function in list(vars(released).items()):
        if isinstance(function, function_type):
            twin = getattr(held, name)
            twin.argtypes = function.argtypes
            twin.restype = function.restype
            swaps[id(function)] = twin
    modules: tuple[ModuleType, ...] = (shared, regopy.interpreter, regopy.output, regopy.node)
    for module in modules:
        for name, value in list(vars(module).items()):
            if id(value) in swaps:
                setattr(module, name, swaps[id(value)])
    shared.rego = held
    return True
