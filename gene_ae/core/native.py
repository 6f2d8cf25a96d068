"""The compiled loops (C files built by `pip install` through setup.py), loaded with ctypes.

Why ctypes and plain C: the loops take and fill numpy buffers and nothing else, so they need no Python API,
no numpy headers and no build-time dependency beyond a C compiler (which mappy already needs).
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Mapping, Sequence

import numpy as np

P, I64, I32, F64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double


def load(module: str, source: str, signatures: Mapping[str, tuple[Sequence, object]]) -> ctypes.CDLL:
    """The shared library built from `source` as extension `module`, its functions typed: name -> (argument
    types, return type). An ImportError saying how to build it when it is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ImportError(f"{module} is not built: run `pip install -e .` (it compiles {source})")
    lib = ctypes.CDLL(spec.origin)
    for name, (args, result) in signatures.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:  # built from an older source: an editable install not rebuilt after a pull
            raise ImportError(f"{module} has no {name}: it was built from an older {source}; run `pip install -e .` "
                              "to rebuild it") from None  # fmt: skip
        fn.argtypes, fn.restype = list(args), result
    return lib


def at(a: np.ndarray) -> int:
    """The address of an array's buffer, for a C pointer argument (the array must be contiguous and outlive
    the call)."""
    return a.ctypes.data
