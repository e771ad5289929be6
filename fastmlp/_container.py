"""The fastmlp model-file container: JSON metadata plus raw arrays, no pickle.

Every fastmlp model file — a dense or pruned estimator saved by
:func:`fastmlp.save`, a checkpoint, a compressed ``.fmz`` model — is this
container. It holds three things: a ``kind`` string saying what the file is,
free JSON metadata, and named binary sections (dense arrays and scipy.sparse
CSR/CSC matrices). Reading it never imports, calls or unpickles anything
named in the file: the reader knows a fixed set of dtypes and structures,
and checks every size, checksum and index before it trusts it.

API
---
``write(path, kind, meta, arrays=None, sparse=None)``
    Write atomically (see :func:`atomic_write`). ``meta``: a dict of JSON
    values (no NaN/inf: encode those yourself). ``arrays``: ``{name:
    ndarray}`` of the dtypes in ``DTYPES`` (bool, int8-64, uint8-64,
    float16/32/64), any shape. ``sparse``: ``{name: csr/csc matrix or
    array}``. Names are strings of 1 to 255 characters.
``read(path, kinds=None) -> Contents``
    ``Contents(kind, meta, arrays, sparse, version)``; the arrays are fresh,
    writable, native-endian and C-ordered; sparse matrices come back in the
    format, container (matrix or array) and index dtype they were written
    with. ``kinds``: the kinds the caller accepts (others are refused).
    Anything wrong raises :class:`fastmlp.ModelFileError` naming it; a
    valid file whose arrays exceed the free memory raises MemoryError.
``atomic_write(path, write_fn)``
    Call ``write_fn(fileobj)`` on a temporary file in the target folder,
    flush, fsync, then ``os.replace`` it over ``path``.

Variants
--------
A new kind of content is a new ``kind`` plus its own metadata keys and
section names, not a new format. Estimators (dense or pruned: a pruned
layer is a CSC matrix section) are kind ``"fastmlp.estimator"``
(fastmlp/_persist.py). A compressed ``.fmz`` model is kind
``"fastmlp.compressed"`` (fastmlp/compression/_file.py): metadata
``{"format": 2}`` and one ``uint8`` section in its own compact layout (the
container's per-section JSON would weigh more than a small model's coded
weights). A variant of one's own, for instance::

    from fastmlp import _container

    _container.write(path, "example.kmeans", {"codec": "kmeans-huffman", "layers": [...]},
                     arrays={"codebook.0": centroids, "codes.0": packed_uint8})
    c = _container.read(path, kinds=("example.kmeans",))
    c.meta["codec"], c.arrays["codes.0"]

``fastmlp.load`` dispatches on the kind through ``_persist.LOADERS``
(``{kind: loader(path, contents) -> estimator}``): a variant registers its
loader there to be loadable by ``fastmlp.load`` and the CLI. The loader
must validate ``meta`` itself (it is untrusted JSON) and raise
:class:`fastmlp.ModelFileError` naming what is wrong. Bump ``VERSION``'s
minor number only for layout changes an older reader could not follow; a
new kind needs no new version (older readers refuse unknown kinds by name).

Byte layout (all integers little-endian)
----------------------------------------
======  ====  ===========================================================
offset  size  field
======  ====  ===========================================================
0       12    magic ``\\x89FASTMLP\\r\\n\\x1a\\n`` (as PNG's: catches 7-bit and
              line-ending mangling)
12      2     format major version
14      2     format minor version
16      8     H, length of the JSON header in bytes
24      4     CRC-32 of the JSON header
28      4     CRC-32 of bytes 0-27
32      H     JSON header, UTF-8: ``{"kind", "meta", "arrays", "sparse"}``
D       ...   sections, D = 32 + H rounded up to 64; each section starts at
              the next multiple of 64 (zero padding between), in header
              order: the arrays, then each sparse matrix's data, indices,
              indptr. The file ends with the last section.
======  ====  ===========================================================

A section entry is ``{"dtype": "<f8", "shape": [...], "offset": o,
"nbytes": n, "crc32": c}`` (offset relative to D); a sparse entry is
``{"format": "csr"|"csc", "container": "matrix"|"array", "shape": [r, c],
"data": entry, "indices": entry, "indptr": entry}``. The 32-byte preamble
keeps this layout in every version, so any reader can report a file's
version.
"""

import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._memory import check_memory
from .exceptions import ModelFileError

MAGIC = b"\x89FASTMLP\r\n\x1a\n"
VERSION = (1, 0)
# Versions this reader understands, inclusive.
SUPPORTED = ((1, 0), (1, 0))
ALIGN = 64
MAX_HEADER = 1 << 30
MAX_NAME = 255
MAX_NDIM = 32
_PREAMBLE = struct.Struct("<12sHHQII")
assert _PREAMBLE.size == 32

# The only dtypes a section may have: numbers and booleans, little-endian.
DTYPES = {
    np.dtype(t).newbyteorder("<").str: np.dtype(t)
    for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
              np.uint16, np.uint32, np.uint64, np.float16, np.float32, np.float64)
}
_INDEX_DTYPES = ("<i4", "<i8")
_SPARSE = {
    ("csr", "matrix"): sp.csr_matrix, ("csc", "matrix"): sp.csc_matrix,
    ("csr", "array"): sp.csr_array, ("csc", "array"): sp.csc_array,
}
_SECTION_KEYS = {"dtype", "shape", "offset", "nbytes", "crc32"}
_SPARSE_KEYS = {"format", "container", "shape", "data", "indices", "indptr"}


@dataclass
class Contents:
    """What a container file holds."""

    kind: str
    meta: dict
    arrays: dict
    sparse: dict
    version: tuple


def _align(n):
    return -(-n // ALIGN) * ALIGN


def _crc(buf):
    return zlib.crc32(buf) & 0xFFFFFFFF


# ------------------------------------------------------------------ writing
def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _remove_stale_temporaries(folder, base):
    """Delete temporaries left by writers of ``base`` that were killed.

    A temporary is named ``.{base}.{pid}.{random}.tmp``; it is stale when
    its writer process no longer exists.
    """
    prefix = f".{base}."
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # the writer is alive
        except ProcessLookupError:
            pass
        except (PermissionError, OSError):
            continue  # another user's live process, or unknowable
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def atomic_write(path, write_fn):
    """Write a file so that it is either the old or the new one, whole.

    ``write_fn(f)`` writes into a temporary file in the same folder, which
    is flushed, fsync'ed and renamed over ``path`` (``os.replace`` is
    atomic). On any error the temporary is removed; one left by a killed
    process is removed by the next write to the same path.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    _remove_stale_temporaries(folder, base)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _FILE_MODE)  # mkstemp makes it 0600
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _check_name(name, what):
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"{what} names must be strings of 1 to {MAX_NAME} characters, "
                         f"got {name!r}")


def _as_section(name, arr):
    arr = np.asarray(arr)
    key = arr.dtype.newbyteorder("<").str if arr.dtype.byteorder != "|" else arr.dtype.str
    if key not in DTYPES:
        raise TypeError(
            f"array {name!r} has dtype {arr.dtype}; a model file stores only "
            f"booleans, integers and floats"
        )
    if arr.ndim > MAX_NDIM:
        raise ValueError(f"array {name!r} has {arr.ndim} dimensions; at most {MAX_NDIM}")
    flat = np.ascontiguousarray(arr.astype(DTYPES[key].newbyteorder("<"), copy=False)).reshape(-1)
    raw = flat.view(np.uint8)
    entry = {"dtype": key, "shape": [int(s) for s in arr.shape], "offset": 0,
             "nbytes": int(raw.size), "crc32": _crc(raw)}
    return entry, raw


def write(path, kind, meta, arrays=None, sparse=None):
    """Write a container file atomically; see the module docstring."""
    if not isinstance(kind, str) or not kind:
        raise ValueError("kind must be a non-empty string")
    header = {"kind": kind, "meta": meta, "arrays": {}, "sparse": {}}
    raws = []
    for name, arr in (arrays or {}).items():
        _check_name(name, "array")
        entry, raw = _as_section(name, arr)
        header["arrays"][name] = entry
        raws.append((entry, raw))
    for name, m in (sparse or {}).items():
        _check_name(name, "sparse matrix")
        if not sp.issparse(m) or m.format not in ("csr", "csc"):
            raise TypeError(f"sparse matrix {name!r} must be a scipy.sparse CSR or CSC matrix")
        entry = {"format": m.format,
                 "container": "array" if isinstance(m, sp.sparray) else "matrix",
                 "shape": [int(s) for s in m.shape]}
        for part in ("data", "indices", "indptr"):
            entry[part], raw = _as_section(f"{name}.{part}", getattr(m, part))
            raws.append((entry[part], raw))
        header["sparse"][name] = entry
    cursor = 0
    for entry, raw in raws:
        cursor = _align(cursor)
        entry["offset"] = cursor
        cursor += entry["nbytes"]
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    head = _PREAMBLE.pack(MAGIC, VERSION[0], VERSION[1], len(text), _crc(text), 0)
    head = head[:28] + struct.pack("<I", _crc(head[:28]))
    data_start = _align(len(head) + len(text))

    def write_fn(f):
        f.write(head)
        f.write(text)
        pos = len(head) + len(text)
        for entry, raw in raws:
            start = data_start + entry["offset"]
            f.write(b"\0" * (start - pos))
            f.write(memoryview(raw))
            pos = start + entry["nbytes"]

    atomic_write(path, write_fn)


# ------------------------------------------------------------------ reading
def _fail(path, msg):
    raise ModelFileError(f"{path}: {msg}")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_section(path, name, e):
    if not isinstance(e, dict) or set(e) != _SECTION_KEYS:
        _fail(path, f"section {name!r} must be an object with keys {sorted(_SECTION_KEYS)}")
    if not isinstance(e["dtype"], str) or e["dtype"] not in DTYPES:
        _fail(path, f"section {name!r} has dtype {e['dtype']!r}, not one of {sorted(DTYPES)}")
    shape = e["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(s) for s in shape):
        _fail(path, f"section {name!r} has shape {shape!r}; expected a list of at most "
                    f"{MAX_NDIM} integers")
    if any(s < 0 for s in shape):
        _fail(path, f"section {name!r} has a negative dimension in its shape {shape}")
    for key in ("offset", "nbytes", "crc32"):
        if not _is_int(e[key]) or e[key] < 0:
            _fail(path, f"section {name!r} has an invalid {key} {e[key]!r}")
    if e["crc32"] > 0xFFFFFFFF:
        _fail(path, f"section {name!r} has an invalid crc32 {e['crc32']!r}")
    expected = DTYPES[e["dtype"]].itemsize
    for s in shape:
        expected *= s  # Python ints: no overflow, whatever the shape claims
    if e["nbytes"] != expected:
        _fail(path, f"section {name!r} declares {e['nbytes']} bytes but its shape {shape} "
                    f"and dtype {e['dtype']} make {expected}")


def _check_header(path, header, kinds):
    if not isinstance(header, dict) or set(header) != {"kind", "meta", "arrays", "sparse"}:
        _fail(path, "the metadata must be an object with keys 'kind', 'meta', 'arrays', 'sparse'")
    kind = header["kind"]
    if not isinstance(kind, str):
        _fail(path, f"the kind must be a string, got {kind!r}")
    if kinds is not None and kind not in kinds:
        _fail(path, f"the file holds a {kind!r}; expected {' or '.join(map(repr, kinds))}")
    if not isinstance(header["meta"], dict):
        _fail(path, "'meta' must be an object")
    for key in ("arrays", "sparse"):
        if not isinstance(header[key], dict):
            _fail(path, f"{key!r} must be an object")
        for name in header[key]:
            if not 1 <= len(name) <= MAX_NAME:
                _fail(path, f"a section name has {len(name)} characters; 1 to {MAX_NAME} allowed")
    sections = []
    for name, e in header["arrays"].items():
        _check_section(path, name, e)
        sections.append((name, e))
    for name, e in header["sparse"].items():
        if not isinstance(e, dict) or set(e) != _SPARSE_KEYS:
            _fail(path, f"sparse matrix {name!r} must be an object with keys "
                        f"{sorted(_SPARSE_KEYS)}")
        if not (isinstance(e["format"], str) and isinstance(e["container"], str)
                and (e["format"], e["container"]) in _SPARSE):
            _fail(path, f"sparse matrix {name!r} has format {e['format']!r} / container "
                        f"{e['container']!r}; expected csr or csc, matrix or array")
        shape = e["shape"]
        if (not isinstance(shape, list) or len(shape) != 2 or not all(_is_int(s) for s in shape)):
            _fail(path, f"sparse matrix {name!r} has shape {shape!r}; expected 2 integers")
        if any(s < 0 for s in shape):
            _fail(path, f"sparse matrix {name!r} has a negative dimension in its shape {shape}")
        for part in ("data", "indices", "indptr"):
            _check_section(path, f"{name}.{part}", e[part])
            if len(e[part]["shape"]) != 1:
                _fail(path, f"section {name}.{part} must be 1-D, has shape {e[part]['shape']}")
            sections.append((f"{name}.{part}", e[part]))
        for part in ("indices", "indptr"):
            if e[part]["dtype"] not in _INDEX_DTYPES:
                _fail(path, f"section {name}.{part} must be int32 or int64, is {e[part]['dtype']}")
    return sections


def _read_exact(f, buf):
    view = memoryview(buf)
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _check_sparse(path, name, e, data, indices, indptr):
    rows, cols = e["shape"]
    major, minor = (rows, cols) if e["format"] == "csr" else (cols, rows)
    nnz = data.shape[0]
    if indptr.shape[0] != major + 1:
        _fail(path, f"sparse matrix {name!r}: indptr has {indptr.shape[0]} entries, its "
                    f"{e['format']} shape {e['shape']} needs {major + 1}")
    if indices.shape[0] != nnz:
        _fail(path, f"sparse matrix {name!r}: {indices.shape[0]} indices for {nnz} values")
    if indptr[0] != 0 or indptr[-1] != nnz:
        _fail(path, f"sparse matrix {name!r}: indptr must start at 0 and end at nnz={nnz}, "
                    f"runs from {indptr[0]} to {indptr[-1]}")
    if (indptr[1:] < indptr[:-1]).any():
        _fail(path, f"sparse matrix {name!r}: indptr is not non-decreasing")
    if nnz and (indices.min() < 0 or indices.max() >= minor):
        _fail(path, f"sparse matrix {name!r}: indices must lie in [0, {minor}), found values "
                    f"from {indices.min()} to {indices.max()}")
    if max(rows, cols, nnz) > np.iinfo(indices.dtype).max:
        _fail(path, f"sparse matrix {name!r}: shape {e['shape']} with nnz={nnz} does not fit "
                    f"its {indices.dtype} indices")


def read(path, kinds=None):
    """Read a container file; see the module docstring.

    Parameters
    ----------
    path : str or os.PathLike
    kinds : collection of str or None
        Kinds the caller accepts; None accepts any.

    Returns
    -------
    Contents
    """
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        pre = f.read(_PREAMBLE.size)
        if pre[: len(MAGIC)] != MAGIC:
            what = "an empty file" if not pre else f"starts with {pre[:len(MAGIC)]!r}"
            _fail(path, f"not a fastmlp model file ({what}; a fastmlp model file starts "
                        f"with {MAGIC!r})")
        if len(pre) < _PREAMBLE.size:
            _fail(path, f"truncated: expected at least {_PREAMBLE.size} bytes of header, "
                        f"the file has {size}")
        _, major, minor, hlen, hcrc, pcrc = _PREAMBLE.unpack(pre)
        if _crc(pre[:28]) != pcrc:
            _fail(path, "checksum mismatch in the file header (bytes 0-31): the file is corrupt")
        if not SUPPORTED[0] <= (major, minor) <= SUPPORTED[1]:
            lo, hi = SUPPORTED
            _fail(path, f"model file format version {major}.{minor} is not supported; this "
                        f"fastmlp reads versions {lo[0]}.{lo[1]} to {hi[0]}.{hi[1]}"
                        + (" (upgrade fastmlp)" if (major, minor) > hi else ""))
        if hlen > MAX_HEADER:
            _fail(path, f"the metadata declares {hlen} bytes, more than the {MAX_HEADER} allowed")
        if _PREAMBLE.size + hlen > size:
            _fail(path, f"truncated: expected at least {_PREAMBLE.size + hlen} bytes (header "
                        f"and metadata), the file has {size}")
        text = f.read(hlen)
        if len(text) != hlen:
            _fail(path, f"truncated while reading: expected {hlen} bytes of metadata, "
                        f"got {len(text)}")
        if _crc(text) != hcrc:
            _fail(path, "checksum mismatch in section 'metadata': the file is corrupt")
        try:
            header = json.loads(text.decode("utf-8"), parse_constant=refuse_constant,
                                parse_float=finite_float)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            _fail(path, f"the metadata is not valid JSON: {exc}")
        sections = _check_header(path, header, kinds)

        data_start = _align(_PREAMBLE.size + hlen)
        cursor = 0
        for name, e in sections:
            cursor = _align(cursor)
            if e["offset"] != cursor:
                _fail(path, f"section {name!r} declares offset {e['offset']}; the layout "
                            f"puts it at {cursor}")
            end = data_start + cursor + e["nbytes"]
            if end > size:
                _fail(path, f"truncated: section {name!r} needs bytes "
                            f"{data_start + cursor} to {end}, expected a file of at least "
                            f"{end} bytes, the file has {size}")
            cursor += e["nbytes"]
        end = data_start + cursor if sections else _PREAMBLE.size + hlen
        if end != size:
            _fail(path, f"{size - end} unexpected bytes after the last section "
                        f"(expected a file of {end} bytes, it has {size})")
        check_memory(sum(e["nbytes"] for _, e in sections), f"loading {path}")

        values = {}
        pos = _PREAMBLE.size + hlen
        for name, e in sections:
            start = data_start + e["offset"]
            pad = f.read(start - pos)
            if len(pad) != start - pos or pad.count(0) != len(pad):
                _fail(path, f"corrupt padding before section {name!r}")
            dtype = DTYPES[e["dtype"]]
            arr = np.empty(e["shape"], dtype=dtype.newbyteorder("<"))
            raw = arr.reshape(-1).view(np.uint8)
            got = _read_exact(f, raw)
            if got != e["nbytes"]:
                _fail(path, f"truncated while reading: section {name!r} expected "
                            f"{e['nbytes']} bytes, got {got}")
            if _crc(raw) != e["crc32"]:
                _fail(path, f"checksum mismatch in section {name!r}: the file is corrupt")
            if dtype == np.bool_ and raw.size and raw.max() > 1:
                _fail(path, f"section {name!r} holds booleans other than 0 and 1")
            if arr.dtype != dtype:
                arr = arr.astype(dtype)  # a big-endian machine
            values[name] = arr
            pos = start + e["nbytes"]

    arrays = {name: values[name] for name in header["arrays"]}
    matrices = {}
    for name, e in header["sparse"].items():
        data, indices, indptr = (values[f"{name}.{p}"] for p in ("data", "indices", "indptr"))
        _check_sparse(path, name, e, data, indices, indptr)
        try:
            m = _SPARSE[e["format"], e["container"]](
                (data, indices, indptr), shape=tuple(e["shape"]), copy=False)
        except (ValueError, TypeError) as exc:
            _fail(path, f"sparse matrix {name!r}: {exc}")
        # scipy may narrow int64 indices that fit in int32: keep them as written.
        m.indices, m.indptr = indices, indptr
        matrices[name] = m
    return Contents(header["kind"], header["meta"], arrays, matrices, (major, minor))


def refuse_constant(name):
    """``json.loads`` hook: NaN and Infinity are not JSON (encode them yourself)."""
    raise ValueError(f"{name} is not allowed in the metadata")


def finite_float(text):
    """``json.loads`` hook: a float literal, refused if it overflows."""
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"{text} overflows a float")
    return value
