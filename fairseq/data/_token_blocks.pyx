# cython: boundscheck=False, wraparound=False, cdivision=True
"""Cython fast path for fairseq's greedy sentence packing (complete / complete_doc).

Two passes over the sizes (count, then fill) so memory is the output plus the input, nothing
proportional to the number of tokens. Semantics are documented in token_blocks.py.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t

ctypedef fused size_t_:
    int32_t
    int64_t


def _as_sizes(sizes):
    """int32/int64 arrays are used in place (no copy of a 1e9-token corpus' sizes); others -> int64."""
    a = np.asarray(sizes)
    if a.dtype != np.int32 and a.dtype != np.int64:
        a = a.astype(np.int64)
    return np.ascontiguousarray(a)


cdef int64_t _pack(const size_t_[:] sizes, int64_t block_size, bint doc, int64_t sep_len,
                   int64_t[:, :] out) nogil:
    cdef Py_ssize_t n = sizes.shape[0]
    cdef Py_ssize_t i = 0
    cdef int64_t tok = 0, cur = 0, nb = 0, s
    cdef bint fill = out.shape[0] > 0
    while i < n:
        s = sizes[i]
        if (cur + s <= block_size or cur == 0) and not (doc and s == sep_len):
            cur += s
            i += 1
        else:
            if (not doc and cur > 0) or (doc and cur > 1):
                if fill:
                    out[nb, 0] = tok
                    out[nb, 1] = tok + cur
                nb += 1
            tok += cur
            cur = 0
            if doc and s == sep_len:
                tok += s
                i += 1
    if (not doc and cur > 0) or (doc and cur > 1):
        if fill:
            out[nb, 0] = tok
            out[nb, 1] = tok + cur
        nb += 1
    return nb


def pack_blocks(sizes, int64_t block_size, bint doc, int64_t document_sep_len):
    a = _as_sizes(sizes)
    return _pack_blocks(a, block_size, doc, document_sep_len)  # dispatches on int32/int64


def _pack_blocks(const size_t_[:] sz, int64_t block_size, bint doc, int64_t document_sep_len):
    cdef int64_t[:, :] empty = np.zeros((0, 2), dtype=np.int64)
    cdef int64_t nb
    with nogil:
        nb = _pack(sz, block_size, doc, document_sep_len, empty)
    out = np.empty((nb, 2), dtype=np.int64)
    cdef int64_t[:, :] ov = out
    if nb > 0:
        with nogil:
            _pack(sz, block_size, doc, document_sep_len, ov)
    return out


def block_to_dataset_index(sizes, slice_indices):
    """For each [s, e): (sentence holding token s, offset of s in it, sentence holding token e-1)."""
    a = _as_sizes(sizes)
    return _b2d(a, slice_indices)


def _b2d(const size_t_[:] sz, slice_indices):
    cdef const int64_t[:, :] sl = np.ascontiguousarray(slice_indices, dtype=np.int64)
    cdef Py_ssize_t nb = sl.shape[0], n = sz.shape[0], b
    out = np.empty((nb, 3), dtype=np.int64)
    cdef int64_t[:, :] ov = out
    cdef Py_ssize_t cur = 0
    cdef int64_t cur_start = 0, s, e
    with nogil:
        for b in range(nb):
            s = sl[b, 0]
            e = sl[b, 1]
            while cur < n - 1 and s >= cur_start + sz[cur]:
                cur_start += sz[cur]
                cur += 1
            ov[b, 0] = cur
            ov[b, 1] = s - cur_start
            if e <= s:
                ov[b, 2] = cur
            else:
                # scan ahead without moving the shared cursor past the start of the next block
                ov[b, 2] = _seek(sz, n, cur, cur_start, e - 1)
    return out


cdef inline Py_ssize_t _seek(const size_t_[:] sz, Py_ssize_t n, Py_ssize_t cur, int64_t cur_start,
                             int64_t target) nogil:
    while cur < n - 1 and target >= cur_start + sz[cur]:
        cur_start += sz[cur]
        cur += 1
    return cur
