"""The model-file container: round trips, atomic writes, and hostile files."""

import os

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import fastmlp
from fastmlp import ModelFileError, _container
from fastmlp._container import DTYPES, read, write

import filecraft


def sample_contents():
    rng = np.random.RandomState(0)
    arrays = {
        "w": rng.randn(5, 3),
        "f32": rng.randn(7).astype(np.float32),
        "empty": np.zeros((0, 4)),
        "scalar": np.array(3.5),
        "mask": rng.rand(4, 2) > 0.5,
        "u64": np.array([2**64 - 1], dtype=np.uint64),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "fortran": np.asfortranarray(rng.randn(3, 4)),
    }
    dense = rng.randn(6, 9) * (rng.rand(6, 9) > 0.7)
    sparse = {
        "csr": sp.csr_matrix(dense),
        "csc_array": sp.csc_array(dense.astype(np.float32)),
        "empty": sp.csr_matrix((3, 0)),
        "wide_index": sp.csr_matrix((dense[0], np.arange(9, dtype=np.int64),
                                     np.array([0, 9], dtype=np.int64)), shape=(1, 9)),
    }
    sparse["wide_index"].indices = np.arange(9, dtype=np.int64)
    sparse["wide_index"].indptr = np.array([0, 9], dtype=np.int64)
    return arrays, sparse


@pytest.fixture
def small_file(tmp_path):
    arrays, sparse = sample_contents()
    path = tmp_path / "m.fmlp"
    write(path, "test.kind", {"note": "hi", "n": [1, 2.5, None, True]}, arrays, sparse)
    return path


@pytest.fixture
def tiny_file(tmp_path):
    """One dense array and one sparse matrix: small enough to try every byte."""
    path = tmp_path / "t.fmlp"
    write(path, "k", {"v": 1}, {"w": np.arange(6.0).reshape(2, 3)},
          {"s": sp.csr_matrix(np.eye(3))})
    return path


def test_round_trip_is_exact(small_file):
    arrays, sparse = sample_contents()
    c = read(small_file)
    assert c.kind == "test.kind" and c.meta == {"note": "hi", "n": [1, 2.5, None, True]}
    assert c.version == _container.VERSION
    assert list(c.arrays) == list(arrays)
    for name, a in arrays.items():
        b = c.arrays[name]
        assert b.shape == a.shape and b.dtype == a.dtype.newbyteorder("=")
        np.testing.assert_array_equal(b, a)
        assert b.flags.writeable and b.flags.c_contiguous
    for name, m in sparse.items():
        r = c.sparse[name]
        assert type(r) is type(m) and r.shape == m.shape and r.dtype == m.dtype
        for part in ("data", "indices", "indptr"):
            assert getattr(r, part).dtype == getattr(m, part).dtype
            np.testing.assert_array_equal(getattr(r, part), getattr(m, part))


def test_sections_are_aligned_and_the_file_has_no_slack(small_file):
    blob = small_file.read_bytes()
    header, data, _ = filecraft.split(blob)
    assert blob.startswith(b"\x89FASTMLP\r\n\x1a\n")
    offsets = [e["offset"] for e in header["arrays"].values()]
    assert all(o % 64 == 0 for o in offsets)
    assert filecraft.section_bounds(blob)[-1] == len(blob)


def test_kinds_are_checked(small_file):
    with pytest.raises(ModelFileError, match="holds a 'test.kind'; expected 'other'"):
        read(small_file, kinds=("other",))


@pytest.mark.parametrize("bad", [np.array(["a"]), np.array([1 + 2j]), np.array([None]),
                                 np.zeros(2, dtype="M8[s]")])
def test_only_numbers_and_booleans_are_written(tmp_path, bad):
    with pytest.raises(TypeError, match="stores only booleans, integers and floats"):
        write(tmp_path / "x", "k", {}, {"a": bad})
    assert os.listdir(tmp_path) == []


def test_write_refuses_non_json_metadata_and_coo(tmp_path):
    with pytest.raises(ValueError):
        write(tmp_path / "x", "k", {"v": float("nan")})
    with pytest.raises(TypeError, match="CSR or CSC"):
        write(tmp_path / "x", "k", {}, sparse={"m": sp.coo_matrix(np.eye(2))})
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------- atomicity
def test_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "m.fmlp"
    write(path, "k", {"v": 1}, {"a": np.arange(3.0)})
    before = path.read_bytes()

    class Boom(Exception):
        pass

    def explode(f):
        f.write(b"partial")
        raise Boom

    with pytest.raises(Boom):
        _container.atomic_write(path, explode)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.fmlp"]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    path = tmp_path / "m.fmlp"
    dead = tmp_path / ".m.fmlp.999999999.abc.tmp"  # no such pid
    alive = tmp_path / f".m.fmlp.{os.getpid()}.xyz.tmp"  # a live writer's
    other = tmp_path / ".other.fmlp.999999999.abc.tmp"
    for p in (dead, alive, other):
        p.write_bytes(b"junk")
    write(path, "k", {})
    assert sorted(os.listdir(tmp_path)) == sorted(["m.fmlp", alive.name, other.name])


def test_written_file_has_normal_permissions(tmp_path):
    path = tmp_path / "m.fmlp"
    write(path, "k", {})
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------ hostile files
def truncations(path, cuts):
    blob = path.read_bytes()
    bounds = filecraft.section_bounds(blob)
    cut_path = path.with_name("cut.fmlp")
    for cut in cuts(blob, bounds):
        cut_path.write_bytes(blob[:cut])
        with pytest.raises(ModelFileError) as info:
            read(cut_path)
        msg = str(info.value)
        if cut < len(_container.MAGIC):
            assert "not a fastmlp model file" in msg
        elif cut in bounds:
            assert "truncated" in msg and f"the file has {cut}" in msg, msg
    return bounds


def test_truncation_at_every_section_boundary(small_file):
    bounds = truncations(small_file, lambda blob, bounds: bounds[:-1])
    assert len(bounds) > 30


def test_truncation_at_every_byte(tiny_file):
    truncations(tiny_file, lambda blob, bounds: range(len(blob)))


def test_every_flipped_byte_is_detected(tiny_file):
    blob = bytearray(tiny_file.read_bytes())
    bad = tiny_file.with_name("bad.fmlp")
    for i in range(len(blob)):
        blob[i] ^= 0x10
        bad.write_bytes(bytes(blob))
        blob[i] ^= 0x10
        with pytest.raises(ModelFileError):
            read(bad)


def test_checksum_error_names_the_section(small_file):
    blob = bytearray(small_file.read_bytes())
    header, _, _ = filecraft.split(bytes(blob))
    hlen = filecraft.PREAMBLE.unpack(bytes(blob[:32]))[3]
    pos = filecraft.align(32 + hlen) + header["arrays"]["f32"]["offset"] + 2
    blob[pos] ^= 1
    small_file.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="checksum mismatch in section 'f32'"):
        read(small_file)
    blob[40] ^= 1  # inside the JSON
    small_file.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="checksum mismatch in section 'metadata'"):
        read(small_file)


def test_wrong_magic_future_version_and_trailing_bytes(tmp_path):
    path = tmp_path / "x"
    header = {"kind": "k", "meta": {}, "arrays": {}, "sparse": {}}
    path.write_bytes(filecraft.assemble(header, magic=b"\x89NOTMLP\r\n\x1a\n"))
    with pytest.raises(ModelFileError, match="not a fastmlp model file"):
        read(path)
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a fastmlp model file.*empty"):
        read(path)
    path.write_bytes(filecraft.assemble(header, version=(2, 0)))
    with pytest.raises(ModelFileError, match=r"version 2\.0 is not supported; this fastmlp "
                                             r"reads versions 1\.0 to 1\.0 \(upgrade"):
        read(path)
    path.write_bytes(filecraft.assemble(header, version=(1, 7)))
    with pytest.raises(ModelFileError, match=r"version 1\.7"):
        read(path)
    path.write_bytes(filecraft.assemble(header) + b"\0")
    with pytest.raises(ModelFileError, match="1 unexpected bytes after the last section"):
        read(path)
    with pytest.raises(ModelFileError, match="cannot open"):
        read(tmp_path / "missing")


def one_array(entry, data=b""):
    return {"kind": "k", "meta": {}, "arrays": {"a": entry}, "sparse": {}}, data


@pytest.mark.parametrize("entry,match", [
    ({"dtype": "<f8", "shape": [2**40], "offset": 0, "nbytes": 8 * 2**40, "crc32": 0},
     r"truncated: section 'a' needs bytes"),
    ({"dtype": "<f8", "shape": [2**20, 2**20, 2**20], "offset": 0, "nbytes": 8 * 2**60,
      "crc32": 0}, "truncated"),
    ({"dtype": "<f8", "shape": [2**40], "offset": 0, "nbytes": 8, "crc32": 0},
     "declares 8 bytes but its shape"),
    ({"dtype": "<f8", "shape": [-1, 4], "offset": 0, "nbytes": 32, "crc32": 0},
     "negative dimension"),
    ({"dtype": "|O", "shape": [1], "offset": 0, "nbytes": 8, "crc32": 0}, "has dtype '|O'"),
    ({"dtype": ["<f8"], "shape": [1], "offset": 0, "nbytes": 8, "crc32": 0}, "has dtype"),
    ({"dtype": "<f8", "shape": [1.5], "offset": 0, "nbytes": 8, "crc32": 0}, "has shape"),
    ({"dtype": "<f8", "shape": [True], "offset": 0, "nbytes": 8, "crc32": 0}, "has shape"),
    ({"dtype": "<f8", "shape": [1] * 33, "offset": 0, "nbytes": 8, "crc32": 0}, "has shape"),
    ({"dtype": "<f8", "shape": [1], "offset": 64, "nbytes": 8, "crc32": 0}, "offset 64"),
    ({"dtype": "<f8", "shape": [1], "offset": -1, "nbytes": 8, "crc32": 0}, "invalid offset"),
    ({"dtype": "<f8", "shape": [1], "offset": 0, "nbytes": 8, "crc32": 2**33}, "crc32"),
    ({"dtype": "<f8", "shape": [1], "offset": 0, "nbytes": 8}, "must be an object with keys"),
    ({"dtype": "|b1", "shape": [2], "offset": 0, "nbytes": 2, "crc32": filecraft.crc(b"\x01\x07")},
     "booleans other than 0 and 1"),
])
def test_lying_section_declarations(tmp_path, entry, match):
    path = tmp_path / "x"
    data = b"\x01\x07" if entry.get("dtype") == "|b1" else b"\0" * 8
    header, _ = one_array(entry)
    path.write_bytes(filecraft.assemble(header, data))
    with pytest.raises(ModelFileError, match=match):
        read(path)


def forged_sparse(fmt, shape, data, indices, indptr):
    parts = {"data": np.asarray(data, dtype="<f8"), "indices": np.asarray(indices, dtype="<i4"),
             "indptr": np.asarray(indptr, dtype="<i4")}
    entry = {"format": fmt, "container": "matrix", "shape": shape}
    blob, cursor = b"", 0
    for name, a in parts.items():
        cursor = filecraft.align(cursor)
        blob += b"\0" * (cursor - len(blob)) + a.tobytes()
        entry[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": cursor,
                       "nbytes": a.nbytes, "crc32": filecraft.crc(a.tobytes())}
        cursor += a.nbytes
    header = {"kind": "k", "meta": {}, "arrays": {}, "sparse": {"m": entry}}
    return filecraft.assemble(header, blob)


@pytest.mark.parametrize("fmt,shape,data,indices,indptr,match", [
    ("csr", [2, 3], [1, 2], [0, 3], [0, 1, 2], r"indices must lie in \[0, 3\)"),
    ("csr", [2, 3], [1, 2], [0, -1], [0, 1, 2], r"indices must lie in \[0, 3\)"),
    ("csc", [3, 2], [1, 2], [0, 5], [0, 1, 2], r"indices must lie in \[0, 3\)"),
    ("csr", [2, 3], [1, 2], [0, 1], [0, 2, 1], "ends at|end at nnz"),
    ("csr", [3, 3], [1, 2], [0, 1], [0, 2, 1, 2], "not non-decreasing"),
    ("csr", [2, 3], [1, 2], [0, 1], [0, 1], "indptr has 2 entries"),
    ("csr", [2, 3], [1, 2], [0], [0, 1, 2], "1 indices for 2 values"),
    ("csr", [2, 3], [1, 2], [0, 1], [1, 1, 2], "must start at 0"),
    ("csr", [-2, 3], [1, 2], [0, 1], [0, 1, 2], "negative dimension"),
    ("coo", [2, 3], [1, 2], [0, 1], [0, 1, 2], "expected csr or csc"),
    ("csr", [2, 3, 1], [1, 2], [0, 1], [0, 1, 2], "expected 2 integers"),
])
def test_inconsistent_sparse_structures(tmp_path, fmt, shape, data, indices, indptr, match):
    path = tmp_path / "x"
    path.write_bytes(forged_sparse(fmt, shape, data, indices, indptr))
    with pytest.raises(ModelFileError, match=match):
        read(path)


def test_a_valid_forged_sparse_matrix_loads(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(forged_sparse("csr", [2, 3], [1, 2], [0, 2], [0, 1, 2]))
    np.testing.assert_array_equal(read(path).sparse["m"].toarray(), [[1, 0, 0], [0, 0, 2]])


@pytest.mark.parametrize("raw,match", [
    (b"{", "not valid JSON"),
    (b'{"kind": NaN}', "not valid JSON"),
    (b'{"kind": 1e999}', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON|must be an object"),
    (b"[]", "must be an object with keys"),
    (b'{"kind": 1, "meta": {}, "arrays": {}, "sparse": {}}', "kind must be a string"),
    (b'{"kind": "k", "meta": [], "arrays": {}, "sparse": {}}', "'meta' must be an object"),
    (b'{"kind": "k", "meta": {}, "arrays": [], "sparse": {}}', "'arrays' must be an object"),
])
def test_malformed_metadata(tmp_path, raw, match):
    path = tmp_path / "x"
    path.write_bytes(filecraft.assemble(None, raw_header=raw))
    with pytest.raises(ModelFileError, match=match):
        read(path)


def test_header_length_beyond_the_file_is_truncation(tmp_path):
    path = tmp_path / "x"
    blob = bytearray(filecraft.assemble({"kind": "k", "meta": {}, "arrays": {}, "sparse": {}}))
    blob[16:24] = (2**62).to_bytes(8, "little")
    blob[28:32] = filecraft.crc(bytes(blob[:28])).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="declares 4611686018427387904 bytes"):
        read(path)


def test_large_valid_file_beyond_free_memory_is_a_memory_error(small_file, monkeypatch):
    monkeypatch.setattr("fastmlp._memory.available_bytes", lambda: 100)
    with pytest.raises(MemoryError, match=r"loading .* needs about \d[\d,]* bytes"):
        read(small_file)


# ------------------------------------------------------------------ fuzzing
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_model_file_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "x"
    path.write_bytes(blob)
    with pytest.raises(ModelFileError):
        read(path)
    with pytest.raises(ModelFileError):
        fastmlp.load(path)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_valid_preamble(tmp_path_factory, tail):
    path = tmp_path_factory.mktemp("fuzz") / "x"
    path.write_bytes(filecraft.assemble(None, raw_header=tail))
    with pytest.raises(ModelFileError):
        read(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False,
                                                                        allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=8,
)
section_keys = st.sampled_from(["dtype", "shape", "offset", "nbytes", "crc32"])
dtype_names = st.sampled_from(sorted(DTYPES) + ["|O", "<U3", "<c16", ">f8"])


@st.composite
def forged_files(draw):
    """Files whose checksums are right but whose declarations are arbitrary."""
    n = draw(st.integers(0, 3))
    entries, data = {}, b""
    for i in range(n):
        shape = draw(st.lists(st.integers(-2, 2**41) | st.integers(0, 6), max_size=3))
        dtype = draw(dtype_names)
        payload = draw(st.binary(max_size=64))
        offset = filecraft.align(len(data))
        data += b"\0" * (offset - len(data)) + payload
        entry = {"dtype": dtype, "shape": shape,
                 "offset": draw(st.just(offset) | st.integers(-1, 200)),
                 "nbytes": draw(st.just(len(payload)) | st.integers(-1, 2**45)),
                 "crc32": draw(st.just(filecraft.crc(payload)) | st.integers(-1, 2**33))}
        if draw(st.booleans()):
            entry[draw(section_keys)] = draw(json_values)
        entries[f"a{i}"] = entry
    header = {"kind": "k", "meta": draw(st.dictionaries(st.text(max_size=4), json_values,
                                                        max_size=3)),
              "arrays": entries, "sparse": {}}
    if draw(st.booleans()):
        header[draw(st.sampled_from(list(header)))] = draw(json_values)
    return filecraft.assemble(header, data)


@given(forged_files())
def test_forged_declarations_raise_only_model_file_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "x"
    path.write_bytes(blob)
    try:
        c = read(path)
    except ModelFileError:
        return
    for a in c.arrays.values():  # whatever passed must be sound
        assert a.nbytes == np.prod(a.shape, dtype=object) * a.itemsize
