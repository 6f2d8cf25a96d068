"""The affine-gap global path of two spans by parasail's C library, loaded with ctypes: the six calls the traceback
needs. Why not `import parasail`: its bindings type thousands of functions at import, ~30 ms of a 0.5 s one-query
search (`python -X importtime`), where these calls cost about a millisecond a hit. Same library, same results (the
package's own `nw_trace_scan_*` and `Result.cigar` make these calls with these arguments)."""

from __future__ import annotations

import ctypes
import importlib.util
from functools import cache
from pathlib import Path

import numpy as np


class _Cigar(ctypes.Structure):  # parasail.h: parasail_cigar_t
    _fields_ = [("seq", ctypes.POINTER(ctypes.c_uint32)), ("len", ctypes.c_int), ("beg_query", ctypes.c_int),
                ("beg_ref", ctypes.c_int)]  # fmt: skip


@cache
def _lib() -> ctypes.CDLL:
    """libparasail.so of the installed parasail package, its calls typed (loaded once a process)."""
    spec = importlib.util.find_spec("parasail")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("parasail is not installed: run `pip install -e .`")
    lib = ctypes.CDLL(str(Path(next(iter(spec.submodule_search_locations))) / "libparasail.so"))
    p, i, s = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    lib.parasail_matrix_create.argtypes, lib.parasail_matrix_create.restype = [s, i, i], p
    lib.parasail_matrix_free.argtypes, lib.parasail_matrix_free.restype = [p], None
    for name in ("parasail_nw_trace_scan_16", "parasail_nw_trace_scan_32"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [s, i, s, i, i, i, p], p
    lib.parasail_result_free.argtypes, lib.parasail_result_free.restype = [p], None
    lib.parasail_result_get_cigar_extra.argtypes = [p, s, i, s, i, p, i, s]
    lib.parasail_result_get_cigar_extra.restype = ctypes.POINTER(_Cigar)
    lib.parasail_cigar_free.argtypes, lib.parasail_cigar_free.restype = [ctypes.POINTER(_Cigar)], None
    return lib


def nw_path(query: bytes, subject: bytes, gap_open: int, gap_extend: int, reward: int, penalty: int,
            wide: bool) -> np.ndarray:  # fmt: skip
    """The packed CIGAR (uint32: length << 4 | op, parasail's and BAM's encoding) of the best global alignment of
    `query` on `subject` over "ACGTN" with these scores (gap_open the cost of a gap's first base, as parasail
    counts it); 32-bit scores where `wide`, else 16-bit."""
    lib = _lib()
    matrix = lib.parasail_matrix_create(b"ACGTN", reward, penalty)
    if not matrix:
        raise MemoryError("parasail: no memory for a scoring matrix")
    try:
        align = lib.parasail_nw_trace_scan_32 if wide else lib.parasail_nw_trace_scan_16
        result = align(query, len(query), subject, len(subject), gap_open, gap_extend, matrix)
        if not result:
            raise MemoryError(f"parasail: no memory to align {len(query):,} x {len(subject):,} bases")
        try:
            cigar = lib.parasail_result_get_cigar_extra(result, query, len(query), subject, len(subject), matrix, 0,
                                                        None)  # fmt: skip
            if not cigar:
                raise MemoryError("parasail: no memory for a traceback")
            try:
                n = cigar.contents.len
                return np.ctypeslib.as_array(cigar.contents.seq, shape=(n,)).copy() if n else np.zeros(0, np.uint32)
            finally:
                lib.parasail_cigar_free(cigar)
        finally:
            lib.parasail_result_free(result)
    finally:
        lib.parasail_matrix_free(matrix)
