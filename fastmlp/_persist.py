"""``fastmlp.save`` and ``fastmlp.load``: estimators in the model-file container.

An estimator is stored as its state (``__getstate__``: hyperparameters and
fitted attributes). Plain values go into the JSON metadata, with tags for
what JSON cannot say (tuples, non-finite floats, numpy scalars, string
arrays); numeric arrays and scipy.sparse matrices go into binary sections
of the container (fastmlp/_container.py). Loading rebuilds that state with
a fixed set of constructors — the class is looked up in ``ESTIMATORS`` by
name, never imported — and hands it to the class's ``__setstate__``, which
checks that it holds together before the model can predict.
"""

import math
import os
import pathlib
import re

import numpy as np
import scipy.sparse as sp

from . import _container
from .exceptions import ModelFileError

KIND = "fastmlp.estimator"
# Estimator classes a file may name; fastmlp/__init__.py fills it.
ESTIMATORS = {}
MAX_DEPTH = 64
_STRING_DTYPE = re.compile(r"<U([0-9]{1,7})")
_PLAIN = (str, int, float, bool, type(None))


# ------------------------------------------------------------------ encoding
class _Encoder:
    """Encodes a state as JSON values, numeric arrays and sparse matrices
    into ``arrays`` and ``sparse`` (the container's sections), or, with
    ``inline_arrays``, numeric arrays as JSON lists too (a compressed model
    keeps its few small arrays, the classes, in its compact header)."""

    def __init__(self, inline_arrays=False):
        self.arrays = {}
        self.sparse = {}
        self.inline_arrays = inline_arrays

    def _name(self, where):
        name = where
        if len(name) > _container.MAX_NAME:
            name = f"#{len(self.arrays) + len(self.sparse)}"
        while name in self.arrays or name in self.sparse:
            name += "'"
        return name

    def encode(self, v, where):
        if v is None or isinstance(v, (bool, str)) and not isinstance(v, np.generic):
            return v
        if isinstance(v, np.generic):
            if isinstance(v, np.str_):
                return {"$": "npstr", "v": str(v)}
            key = v.dtype.newbyteorder("<").str if v.dtype.byteorder != "|" else v.dtype.str
            if key not in _container.DTYPES:
                raise TypeError(f"{where}: numpy scalar of dtype {v.dtype} cannot be stored")
            return {"$": "scalar", "dtype": key, "v": self.encode(v.item(), where)}
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            if math.isfinite(v):
                return float(v)
            return {"$": "float", "v": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if isinstance(v, list):
            return [self.encode(x, f"{where}.{i}") for i, x in enumerate(v)]
        if isinstance(v, tuple):
            return {"$": "tuple",
                    "items": [self.encode(x, f"{where}.{i}") for i, x in enumerate(v)]}
        if isinstance(v, dict):
            if all(isinstance(k, str) for k in v):
                return {"$": "dict",
                        "items": {k: self.encode(x, f"{where}.{k}") for k, x in v.items()}}
            # Other keys (class_weight's labels): a list of (key, value) pairs.
            return {"$": "map", "items": [[self.encode(k, f"{where}.key"),
                                           self.encode(x, f"{where}.{k}")] for k, x in v.items()]}
        if sp.issparse(v):
            if v.format not in ("csr", "csc"):
                raise TypeError(f"{where}: sparse matrices are stored as CSR or CSC, "
                                f"not {v.format}")
            name = self._name(where)
            self.sparse[name] = v
            return {"$": "sparse", "name": name}
        if isinstance(v, np.ndarray):
            return self._array(v, where)
        if isinstance(v, np.random.RandomState):
            kind, keys, pos, has_gauss, cached = v.get_state()
            return {"$": "RandomState", "keys": [int(k) for k in keys], "pos": int(pos),
                    "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
        if isinstance(v, pathlib.PurePath):
            return {"$": "path", "v": str(v)}
        raise TypeError(
            f"{where} is a {type(v).__module__}.{type(v).__qualname__}; a fastmlp model file "
            "stores only numpy arrays, scipy.sparse matrices and plain Python values"
        )

    def _array(self, a, where):
        if a.dtype.kind == "U":
            return {"$": "strings", "dtype": a.dtype.newbyteorder("<").str,
                    "shape": list(a.shape), "items": [str(x) for x in a.ravel()]}
        if a.dtype == object:
            items = list(a.ravel())
            for x in items:
                if not isinstance(x, _PLAIN) or isinstance(x, np.generic):
                    raise TypeError(
                        f"{where}: an object array can be stored only if it holds plain "
                        f"strings and numbers, it holds a {type(x).__name__}"
                    )
            return {"$": "objects", "shape": list(a.shape),
                    "items": [self.encode(x, where) for x in items]}
        if self.inline_arrays:
            key = a.dtype.newbyteorder("<").str if a.dtype.byteorder != "|" else a.dtype.str
            if key not in _container.DTYPES:
                raise TypeError(f"{where}: an array of dtype {a.dtype} cannot be stored")
            # float(x) of any stored float dtype is exact, and so is its JSON.
            return {"$": "values", "dtype": key, "shape": list(a.shape),
                    "items": [self.encode(x, where) for x in a.ravel().tolist()]}
        name = self._name(where)
        self.arrays[name] = np.asarray(a)  # the container checks the dtype
        return {"$": "array", "name": name}


def _save_state(estimator, path, state):
    from . import __version__

    cls = type(estimator)
    if ESTIMATORS.get(cls.__name__) is not cls:
        raise TypeError(
            f"fastmlp.save stores fastmlp estimators ({', '.join(sorted(ESTIMATORS))}); "
            f"got a {cls.__module__}.{cls.__qualname__}"
        )
    if state.get("callbacks"):
        # Training-time hooks (any object), not part of the model.
        state = dict(state, callbacks=None)
    enc = _Encoder()
    meta = {"class": cls.__name__, "fastmlp_version": __version__,
            "state": enc.encode(state, "state")}
    _container.write(path, KIND, meta, enc.arrays, enc.sparse)


def save(estimator, path):
    """Save an estimator (fitted or not) to ``path``, atomically.

    The file holds the hyperparameters and every fitted attribute —
    optimiser state included, so a loaded model predicts bit-identically
    and ``partial_fit`` continues as the original would. No pickle: loading
    it runs no code from the file (see :func:`fastmlp.load`). The
    ``callbacks`` hyperparameter (arbitrary objects: hooks for training,
    not part of the model) is stored as None.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
    path : str or os.PathLike
        Written through a temporary file in the same folder, fsync'ed and
        renamed: a crash leaves the old file or the new one, never a mix.
    """
    _save_state(estimator, path, estimator.__getstate__())


# ------------------------------------------------------------------ decoding
class _Decoder:
    def __init__(self, path, contents):
        self.path = path
        self.arrays = contents.arrays
        self.sparse = contents.sparse
        self.used = set()

    def fail(self, where, msg):
        raise ModelFileError(f"{self.path}: {where}: {msg}")

    def _take(self, table, name, where):
        if not isinstance(name, str) or name not in table:
            self.fail(where, f"refers to a section {name!r} the file does not hold")
        if name in self.used:
            self.fail(where, f"refers to section {name!r} a second time")
        self.used.add(name)
        return table[name]

    def decode(self, v, where, depth=0):
        if depth > MAX_DEPTH:
            self.fail(where, f"nested deeper than {MAX_DEPTH} levels")
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.decode(x, f"{where}.{i}", depth + 1) for i, x in enumerate(v)]
        if not isinstance(v, dict) or not isinstance(v.get("$"), str):
            self.fail(where, "an object without a '$' tag")
        tag = v["$"]
        handler = getattr(self, "_tag_" + tag, None) if tag.isidentifier() else None
        if handler is None:
            self.fail(where, f"unknown value tag {tag!r}")
        try:
            return handler(v, where, depth)
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            self.fail(where, f"malformed {tag!r} value: {exc}")

    def _fields(self, v, where, *keys):
        if set(v) != {"$", *keys}:
            self.fail(where, f"a {v['$']!r} value must have exactly the keys {sorted(keys)}")
        return [v[k] for k in keys]

    def _tag_float(self, v, where, depth):
        (x,) = self._fields(v, where, "v")
        if x not in ("nan", "inf", "-inf"):
            self.fail(where, f"float tag holds {x!r}")
        return float(x)

    def _tag_tuple(self, v, where, depth):
        (items,) = self._fields(v, where, "items")
        if not isinstance(items, list):
            self.fail(where, "tuple items must be a list")
        return tuple(self.decode(x, f"{where}.{i}", depth + 1) for i, x in enumerate(items))

    def _tag_dict(self, v, where, depth):
        (items,) = self._fields(v, where, "items")
        if not isinstance(items, dict):
            self.fail(where, "dict items must be an object")
        return {k: self.decode(x, f"{where}.{k}", depth + 1) for k, x in items.items()}

    def _tag_map(self, v, where, depth):
        (items,) = self._fields(v, where, "items")
        if not isinstance(items, list) or not all(isinstance(p, list) and len(p) == 2
                                                  for p in items):
            self.fail(where, "map items must be a list of [key, value] pairs")
        out = {}
        for i, (k, x) in enumerate(items):
            key = self.decode(k, f"{where}.key{i}", depth + 1)
            if not isinstance(key, (str, int, float, bool, type(None), np.generic)):
                self.fail(where, f"map key {key!r} is not a plain value")
            out[key] = self.decode(x, f"{where}.{i}", depth + 1)
        return out

    def _tag_scalar(self, v, where, depth):
        dtype, x = self._fields(v, where, "dtype", "v")
        if not isinstance(dtype, str) or dtype not in _container.DTYPES:
            self.fail(where, f"scalar dtype {dtype!r} is not allowed")
        x = self.decode(x, where, depth + 1)
        if not isinstance(x, (bool, int, float)):
            self.fail(where, f"scalar value {x!r} is not a number")
        dt = _container.DTYPES[dtype]
        if dt.kind in "iub" and not isinstance(x, int):
            self.fail(where, f"{dt} scalar holds {x!r}")
        if dt.kind in "iu" and not np.iinfo(dt).min <= x <= np.iinfo(dt).max:
            self.fail(where, f"{x} is out of range for {dt}")
        return dt.type(x)

    def _tag_npstr(self, v, where, depth):
        (x,) = self._fields(v, where, "v")
        if not isinstance(x, str):
            self.fail(where, "npstr holds a non-string")
        return np.str_(x)

    def _shape(self, shape, where, n_items):
        if (not isinstance(shape, list) or len(shape) > _container.MAX_NDIM
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                           for s in shape)):
            self.fail(where, f"invalid shape {shape!r}")
        if math.prod(shape) != n_items:
            self.fail(where, f"shape {shape} does not match its {n_items} items")
        return tuple(shape)

    def _tag_strings(self, v, where, depth):
        dtype, shape, items = self._fields(v, where, "dtype", "shape", "items")
        m = _STRING_DTYPE.fullmatch(dtype) if isinstance(dtype, str) else None
        if m is None or int(m.group(1)) == 0:
            self.fail(where, f"string dtype {dtype!r} is not allowed")
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            self.fail(where, "string array items must be strings")
        shape = self._shape(shape, where, len(items))
        width = int(m.group(1))
        if any(len(x) > width for x in items):
            self.fail(where, f"a string is longer than its dtype {dtype}")
        return np.array(items, dtype=f"U{width}").reshape(shape)

    def _tag_objects(self, v, where, depth):
        shape, items = self._fields(v, where, "shape", "items")
        if not isinstance(items, list):
            self.fail(where, "object array items must be a list")
        shape = self._shape(shape, where, len(items))
        out = np.empty(len(items), dtype=object)
        for i, x in enumerate(items):
            x = self.decode(x, f"{where}.{i}", depth + 1)
            if not isinstance(x, _PLAIN):
                self.fail(where, "object arrays may hold only strings and numbers")
            out[i] = x
        return out.reshape(shape)

    def _tag_values(self, v, where, depth):
        dtype, shape, items = self._fields(v, where, "dtype", "shape", "items")
        if not isinstance(dtype, str) or dtype not in _container.DTYPES:
            self.fail(where, f"array dtype {dtype!r} is not allowed")
        if not isinstance(items, list):
            self.fail(where, "array items must be a list")
        shape = self._shape(shape, where, len(items))
        dtype = _container.DTYPES[dtype]
        kind = dtype.kind
        values = []
        for i, x in enumerate(items):
            if kind == "f":
                x = self.decode(x, f"{where}.{i}", depth + 1)
            ok = (isinstance(x, bool) if kind == "b"
                  else isinstance(x, int) and not isinstance(x, bool) if kind in "iu"
                  else isinstance(x, (int, float)) and not isinstance(x, bool))
            if not ok:
                self.fail(where, f"item {i} ({x!r}) is not a {dtype} value")
            values.append(x)
        # Out-of-range integers raise OverflowError: a malformed value.
        return np.array(values, dtype=dtype).reshape(shape)

    def _tag_array(self, v, where, depth):
        (name,) = self._fields(v, where, "name")
        return self._take(self.arrays, name, where)

    def _tag_sparse(self, v, where, depth):
        (name,) = self._fields(v, where, "name")
        return self._take(self.sparse, name, where)

    def _tag_RandomState(self, v, where, depth):
        keys, pos, has_gauss, cached = self._fields(v, where, "keys", "pos", "has_gauss",
                                                    "cached_gaussian")
        if (not isinstance(keys, list) or len(keys) != 624
                or not all(isinstance(k, int) and 0 <= k < 2**32 for k in keys)):
            self.fail(where, "RandomState keys must be 624 integers in [0, 2**32)")
        for name, x in (("pos", pos), ("has_gauss", has_gauss)):
            if not isinstance(x, int) or isinstance(x, bool):
                self.fail(where, f"RandomState {name} must be an integer")
        if not isinstance(cached, (int, float)) or isinstance(cached, bool):
            self.fail(where, "RandomState cached_gaussian must be a number")
        rs = np.random.RandomState()
        rs.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, float(cached)))
        return rs

    def _tag_path(self, v, where, depth):
        (x,) = self._fields(v, where, "v")
        if not isinstance(x, str):
            self.fail(where, "path must be a string")
        return pathlib.Path(x)


def load(path):
    """Load an estimator saved by :func:`fastmlp.save` (or a checkpoint).

    Safe on files from anywhere: nothing named in the file is imported,
    called or unpickled. Every size is checked against the file's size
    before anything is allocated, every section against its checksum,
    shape and dtype, every sparse structure for consistency, and the
    rebuilt model's state for coherence (layer shapes, output count,
    classes, optimiser state).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    estimator : MLPClassifier or MLPRegressor

    Raises
    ------
    fastmlp.ModelFileError
        The file is not a valid fastmlp model file; the message says why.
    MemoryError
        A valid file whose arrays need more memory than is available.
    """
    return read(path)


def read(path, kinds=None):
    """The estimator in a model file of one of ``kinds`` (default: any kind
    in ``LOADERS``), read by the container and built by the kind's loader:
    the one reader behind :func:`load` and ``fastmlp.compression.load``."""
    path = os.fspath(path)
    contents = _container.read(path, kinds=tuple(LOADERS) if kinds is None else kinds)
    return LOADERS[contents.kind](path, contents)


def estimator_class(path, name):
    """The estimator class a model file names: looked up in ``ESTIMATORS``,
    never imported; ModelFileError for any other name."""
    cls = ESTIMATORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(
            f"{path}: unknown estimator class {name!r}; this fastmlp loads "
            f"{', '.join(sorted(ESTIMATORS))}"
        )
    return cls


def _load_estimator(path, contents):
    """The estimator a ``fastmlp.estimator`` container holds."""
    meta = contents.meta
    if set(meta) != {"class", "fastmlp_version", "state"}:
        raise ModelFileError(
            f"{path}: the metadata must hold 'class', 'fastmlp_version' and 'state', "
            f"it holds {sorted(meta)}"
        )
    cls = estimator_class(path, meta["class"])
    decoder = _Decoder(path, contents)
    state = decoder.decode(meta["state"], "state")
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: the stored state is not a dict")
    est = cls.__new__(cls)
    try:
        est.__setstate__(state)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: the stored model is inconsistent: {exc}") from None
    unused = (set(contents.arrays) | set(contents.sparse)) - decoder.used
    if unused:
        raise ModelFileError(f"{path}: sections {sorted(unused)} are not part of the state")
    return est


# fastmlp.load's readers, by container kind (see fastmlp/_container.py,
# "Variants": other kinds of model file register theirs here).
LOADERS = {KIND: _load_estimator}
