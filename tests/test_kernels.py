"""The hand-written vector kernels (fastmlp/_kernels: src/_small_gemm.pxd,
src/_adam_simd.pxd) against numpy, on every instruction set the CPU has,
and training with them against training without them."""
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import MLPClassifier, _kernels

ISAS = [cap for cap in (2, 1) if _kernels.isa() >= cap]
needs_kernels = pytest.mark.skipif(not ISAS, reason="this CPU has no AVX2: BLAS only")

# (m, k, n): one row, one column, odd sizes, sizes one off the vector widths
# (4, 8, 16 lanes), more rows than a block, and a shared dimension longer
# than one NT panel (FM_KC = 128).
SHAPES = [(1, 1, 1), (1, 64, 100), (2, 3, 5), (7, 9, 17), (32, 64, 100), (33, 15, 31),
          (13, 200, 65), (100, 100, 10), (9, 257, 3), (50, 1, 129)]
# Products whose B the kernels pack in panels (NN, TN: 16 rows of C or more,
# deeper than one panel or rows 2 KiB apart): one panel and a bit, uneven
# panels, a masked last vector, rows 2 KiB apart in float32 and float64,
# and no shared dimension at all.
PACKED_SHAPES = [(16, 129, 17), (40, 300, 70), (203, 150, 77), (17, 385, 64),
                 (24, 9, 520), (20, 5, 300), (16, 0, 520)]


@pytest.fixture(params=ISAS, ids=lambda c: {1: "avx2", 2: "avx512"}[c])
def isa_cap(request):
    old = _kernels.set_isa_cap(request.param)
    yield request.param
    _kernels.set_isa_cap(old)


def operands(kind, m, k, n, dtype, rng, lda_pad=0):
    """A (m x k, or k x m for "tn", with row stride k + lda_pad), B, and the
    float64 reference of the product."""
    rows, cols = (k, m) if kind == "tn" else (m, k)
    A = rng.standard_normal((rows, cols + lda_pad)).astype(dtype)[:, :cols]
    B = rng.standard_normal((n, k) if kind == "nt" else (k, n)).astype(dtype)
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    ref = A64.T @ B64 if kind == "tn" else (A64 @ B64.T if kind == "nt" else A64 @ B64)
    return A, B, ref


@needs_kernels
@pytest.mark.parametrize("kind", ["nn", "tn", "nt"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_products_agree_with_numpy(isa_cap, kind, shape, dtype):
    rng = np.random.default_rng(sum(shape))
    m, k, n = shape
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for pad in (0, 3):  # layer inputs may be rows of a wider X
        A, B, ref = operands(kind, m, k, n, dtype, rng, lda_pad=pad)
        scale = np.abs(ref).max() + 1
        C = np.full((m, n), np.nan, dtype)  # beta 0 must not read C
        assert _kernels.product(kind, A, B, C)
        np.testing.assert_allclose(C / scale, ref / scale, rtol=0, atol=tol)
        C = np.ones((m, n), dtype)
        assert _kernels.product(kind, A, B, C, accumulate=True)
        np.testing.assert_allclose((C - 1) / scale, ref / scale, rtol=0, atol=tol)


def guarded(shape, dtype, fill, guard=16):
    """An array of `shape` followed in memory by `guard` sentinel values:
    the kernels' partial last vectors must write none of them."""
    size = int(np.prod(shape))
    buf = np.full(size + guard, fill, dtype)
    buf[size:] = -7.25
    return buf, buf[:size].reshape(shape)


@needs_kernels
@pytest.mark.parametrize("kind", ["nn", "nn+bias", "tn", "nt"])
@pytest.mark.parametrize("shape", [(7, 9, 17), (9, 5, 10), (33, 15, 31), (16, 200, 3)], ids=str)
def test_products_write_no_value_past_the_output(isa_cap, kind, shape, dtype):
    # Every output row ends in a partial vector (masked with AVX-512, moved
    # in pieces with AVX2): nothing beyond C's last row may be written.
    rng = np.random.default_rng(sum(shape))
    m, k, n = shape
    A, B, ref = operands(kind[:2], m, k, n, dtype, rng)
    for accumulate in (False, True):
        if kind == "nn+bias" and accumulate:
            continue
        buf, C = guarded((m, n), dtype, 0.0)
        bias = np.zeros(n, dtype) if kind == "nn+bias" else None
        assert _kernels.product(kind[:2], A, B, C, accumulate=accumulate, bias=bias)
        want = np.maximum(ref, 0) if bias is not None else ref
        np.testing.assert_allclose(C, want, rtol=1e-4, atol=1e-4)
        assert np.all(buf[m * n:] == dtype.type(-7.25))


@needs_kernels
def test_adam_fused_into_the_product_writes_no_value_past_its_arrays(isa_cap, dtype):
    rng = np.random.default_rng(3)
    k, n_in, n_out = 9, 5, 10  # rows of one full and one partial vector
    A = rng.standard_normal((k, n_in)).astype(dtype)
    D = rng.standard_normal((k, n_out)).astype(dtype)
    arrays = [guarded((n_in, n_out), dtype, f) for f in (0.5, 0.01, 0.001)]
    assert _kernels.adam_product(A, D, *(a for _, a in arrays), 1e-3, 0.9, 0.999, 1e-8)[1] == 0
    assert np.all(arrays[0][1] != 0.5)  # the step moved every weight
    for buf, a in arrays:
        assert np.all(buf[a.size:] == dtype.type(-7.25))


@needs_kernels
@pytest.mark.parametrize("kind", ["nn", "tn", "nt"])
def test_products_same_bits_for_any_thread_count_and_isa(kind, dtype):
    """Every output is one multiply-add chain in index order: splitting rows
    over threads, and AVX2 against AVX-512, change no bit."""
    rng = np.random.default_rng(3)
    A, B, _ = operands(kind, 203, 150, 77, dtype, rng)  # above the threading threshold
    out = []
    for cap in ISAS:
        old = _kernels.set_isa_cap(cap)
        try:
            for n_threads in (1, 2):
                C = np.empty((203, 77), dtype)
                _kernels.product(kind, A, B, C, n_threads=n_threads)
                out.append(C)
        finally:
            _kernels.set_isa_cap(old)
    for C in out[1:]:
        np.testing.assert_array_equal(C, out[0])


@needs_kernels
@pytest.mark.parametrize("kind", ["nn", "tn"])
@pytest.mark.parametrize("shape", PACKED_SHAPES, ids=str)
def test_packed_products_agree_with_numpy(isa_cap, kind, shape, dtype):
    rng = np.random.default_rng(sum(shape))
    m, k, n = shape
    tol = 1e-12 if dtype == np.float64 else 2e-5
    A, B, ref = operands(kind, m, k, n, dtype, rng, lda_pad=3)
    scale = np.abs(ref).max() + 1
    C = np.full((m, n), np.nan, dtype)
    assert _kernels.product(kind, A, B, C)
    np.testing.assert_allclose(C / scale, ref / scale, rtol=0, atol=tol)


@needs_kernels
@pytest.mark.parametrize("kind", ["nn", "tn", "nn+bias"])
@pytest.mark.parametrize("shape", PACKED_SHAPES + [(15, 300, 40), (64, 128, 64)], ids=str)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("by_index", [False, True])
def test_packed_products_give_the_in_place_products_bits(isa_cap, kind, shape, n_threads,
                                                         by_index, dtype):
    """Packing B changes the memory the chains read, never a chain: each
    goes on from the last panel's sums in C, so every output has the bits
    of B read in place, with the bias and relu of the forward pass, A's
    rows by index, on either thread count. (15 rows and depth 128 are the
    edges where nothing is packed.)"""
    rng = np.random.default_rng(sum(shape) + n_threads)
    m, k, n = shape
    op = kind[:2]
    # B as numpy allocates it, mostly 16 bytes past a 64-byte boundary: the
    # panels are aligned, B read in place is not
    A, B, _ = operands(op, m, k, n, dtype, rng, lda_pad=3)
    bias = rng.standard_normal(n).astype(dtype) if kind == "nn+bias" else None
    rows = None
    if by_index:
        X = rng.standard_normal((A.shape[0] + 50, A.shape[1] + 2)).astype(dtype)[:, :A.shape[1]]
        rows = rng.permutation(X.shape[0])[:A.shape[0]].astype(np.int64)
        A = X
    out = []
    for pack in (False, True):
        was = _kernels.pack_deep_enabled(pack)
        try:
            C = np.full((m, n), np.nan, dtype)
            assert _kernels.product(op, A, B, C, n_threads=n_threads, rows=rows, bias=bias)
            out.append(C)
        finally:
            _kernels.pack_deep_enabled(was)
    np.testing.assert_array_equal(out[1], out[0])
    A_rows = A[rows] if by_index else A
    ref = (A_rows.T @ B) if op == "tn" else A_rows @ B
    if bias is not None:
        ref = np.maximum(ref + bias, 0)
    tol = 1e-10 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(out[1], ref, rtol=tol, atol=tol)


@needs_kernels
def test_product_bias_is_checked():
    A, B = np.ones((3, 4)), np.ones((4, 2))
    with pytest.raises(ValueError, match="one value per column"):
        _kernels.product("nn", A, B, np.empty((3, 2)), bias=np.ones(3))
    with pytest.raises(ValueError, match="nn product"):
        _kernels.product("tn", A, np.ones((3, 2)), np.empty((4, 2)), bias=np.ones(2))


@needs_kernels
def test_products_check_shapes():
    A = np.ones((3, 4))
    with pytest.raises(ValueError):
        _kernels.product("nn", A, np.ones((5, 2)), np.empty((3, 2)))
    with pytest.raises(ValueError):
        _kernels.product("nn", A, np.ones((4, 2)), np.empty((3, 3)))


def adam_reference(th, g, m, v, lr, b1, b2, eps, l2, l1):
    """The plain loop's arithmetic (src/_updates.pxd) in the same precision."""
    T = th.dtype.type
    one = T(1)
    g = g + T(l2) * th + np.where(th > 0, T(l1), np.where(th < 0, -T(l1), T(0)))
    m = T(b1) * m + (one - T(b1)) * g
    v = T(b2) * v + (one - T(b2)) * g * g
    return th - T(lr) * m / (np.sqrt(v) + T(eps)), m, v


@needs_kernels
@pytest.mark.parametrize("n", [1, 7, 8, 16, 17, 1013])
@pytest.mark.parametrize("penalty", [(0.0, 0.0), (0.01, 0.0), (0.01, 0.001)])
def test_adam_agrees_with_the_plain_loop(isa_cap, n, penalty, dtype):
    rng = np.random.default_rng(n)
    l2, l1 = penalty
    th = rng.standard_normal(n).astype(dtype)
    th[: n // 4] = 0  # sign(0) = 0 in the L1 term
    # gradients and second moments over many decades, zeros included
    low = -150 if dtype == np.float64 else -18
    g = (rng.standard_normal(n) * np.logspace(low, 2, n)).astype(dtype)
    m = (rng.standard_normal(n) * 0.1).astype(dtype)
    v = (rng.random(n) * np.logspace(2 * low, 0, n)).astype(dtype)
    g[:2] = 0
    v[:3] = 0
    hyper = (1e-3, 0.9, 0.999, 1e-8)
    exp_th, exp_m, exp_v = adam_reference(th, g, m, v, *hyper, l2, l1)
    got = [a.copy() for a in (th, g, m, v)]
    sq, ab, bad = _kernels.adam(*got, *hyper, l2, l1)
    assert bad == 0
    if l2 or l1:
        np.testing.assert_allclose(sq, (th.astype(np.float64) ** 2).sum(), rtol=1e-12)
        # sum |th| only with an L1 term (the loss's only use of it)
        np.testing.assert_allclose(ab, np.abs(th.astype(np.float64)).sum() if l1 else 0,
                                   rtol=1e-12)
    else:
        assert sq == ab == 0
    # Multiply-adds round once where the plain loop rounds twice: each result
    # is within a few ulp of the terms it sums (the sum itself may cancel).
    T = dtype.type
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    gp = np.abs(g) + abs(l2) * np.abs(th) + l1
    m_scale = T(0.9) * np.abs(m) + T(0.1) * gp
    v_scale = T(0.999) * v + T(0.001) * gp * gp
    assert np.all(np.abs(got[2] - exp_m) <= 4 * eps * m_scale + tiny)
    assert np.all(np.abs(got[3] - exp_v) <= 4 * eps * v_scale + tiny)
    # The step to a few ulp (float64 AVX-512: Newton-refined estimates) on
    # top of what the moments' rounding carries into it.
    exp_step = exp_th - th
    carried = T(1e-3) * 4 * eps * m_scale / (np.sqrt(exp_v) + T(1e-8))
    err = np.abs(got[0] - exp_th)
    bound = 16 * eps * np.abs(exp_step) + 2 * carried + eps * np.abs(exp_th) + tiny
    assert np.all(err <= bound), (err / bound).max()


@needs_kernels
@pytest.mark.parametrize("where", [0, 5, 9, 16, 40, 52])
def test_adam_reports_non_finite_parameters(isa_cap, where, dtype):
    # float64 AVX-512: the divider's vector of a group of three, the
    # Newton-step ones, a vector after the groups, the scalar tail
    n = 53
    th, g, m, v = (np.ones(n, dtype) for _ in range(4))
    g[where] = np.inf
    assert _kernels.adam(th, g, m, v, 1e-3, 0.9, 0.999, 1e-8)[2] == 1
    th, g, m, v = (np.ones(n, dtype) for _ in range(4))
    th[where] = np.nan
    assert _kernels.adam(th, g, m, v, 1e-3, 0.9, 0.999, 1e-8)[2] == 1


def fit_script(flags):
    return f"""
import sys, numpy as np
from sklearn.datasets import load_digits
from fastmlp import MLPClassifier, _kernels
print(_kernels.isa())
X, y = load_digits(return_X_y=True)
out = {{}}
for dtype in ("float64", "float32"):
    clf = MLPClassifier((37,), alpha=1e-3, batch_size=32, max_iter=3, random_state=0, tol=0,
                        n_threads=1).fit((X / 16).astype(dtype), y)
    out[dtype] = clf._theta
np.savez(sys.argv[1], **out)
"""


@needs_kernels
def test_training_with_and_without_kernels_agrees(tmp_path, child_env):
    """FASTMLP_NO_AVX2=1 trains with BLAS and the plain Adam loop; the
    kernels give the same fit to rounding."""
    import warnings

    from sklearn.datasets import load_digits

    env = dict(child_env, FASTMLP_NO_AVX2="1")
    path = tmp_path / "base.npz"
    res = subprocess.run([sys.executable, "-c", fit_script(""), str(path)], env=env,
                         check=True, cwd=tmp_path, capture_output=True, text=True)
    assert res.stdout.split()[0] == "0"
    base = np.load(path)
    X, y = load_digits(return_X_y=True)
    for dtype, rtol in (("float64", 1e-8), ("float32", 2e-3)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = MLPClassifier((37,), alpha=1e-3, batch_size=32, max_iter=3, random_state=0,
                                tol=0, n_threads=1).fit((X / 16).astype(dtype), y)
        scale = np.abs(base[dtype]).max()
        np.testing.assert_allclose(clf._theta / scale, base[dtype] / scale, rtol=0, atol=rtol)


def test_environment_caps_the_instruction_set(tmp_path, child_env):
    code = "from fastmlp import _kernels; print(_kernels.isa())"
    levels = {}
    for var in ("FASTMLP_NO_AVX512", "FASTMLP_NO_AVX2"):
        env = dict(child_env, **{var: "1"})
        res = subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path,
                             capture_output=True, text=True)
        levels[var] = int(res.stdout)
    assert levels["FASTMLP_NO_AVX2"] == 0
    assert levels["FASTMLP_NO_AVX512"] == min(1, _kernels.isa())


AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}


def scipy_openblas_core():
    """The core name of the OpenBLAS under scipy.linalg (None if another BLAS)."""
    from threadpoolctl import threadpool_info

    for lib in threadpool_info():
        if lib["internal_api"] == "openblas" and "scipy.libs" in lib["filepath"]:
            return lib.get("architecture")
    return None


def test_blas_core_probe_reads_openblas_kernels(tmp_path, child_env):
    """Small A^T delta products go to BLAS only where OpenBLAS runs AVX-512
    kernels: the probe agrees with threadpoolctl's reading of its core, and
    follows OPENBLAS_CORETYPE."""
    core = scipy_openblas_core()
    assert _kernels.blas_core() == (0 if core is None else 2 if core.lower() in AVX512_CORES
                                    else 1)
    # the kernels take products of any size only over an OpenBLAS of older kernels
    unbounded = _kernels.isa() == 2 and _kernels.blas_core() == 1
    assert (_kernels.max_work() == sys.maxsize) == unbounded
    assert unbounded or _kernels.max_work() == 2**26
    if core is None:
        return
    code = ("from fastmlp import _kernels; import sys; "
            "print(_kernels.blas_core(), int(_kernels.max_work() == sys.maxsize))")
    forced = ["Haswell"] + (["SkylakeX"] if _kernels.isa() == 2 else [])
    for coretype in forced:
        res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True,
                             env=dict(child_env, OPENBLAS_CORETYPE=coretype),
                             capture_output=True, text=True)
        want = "2 0" if coretype == "SkylakeX" else f"1 {int(_kernels.isa() == 2)}"
        assert res.stdout.strip() == want, coretype


@needs_kernels
def test_fit_is_reproducible_and_thread_count_free(dtype):
    """Same random_state: the same bits; 1 and 2 threads: the same fit to
    rounding (the products split rows without changing a sum; BLAS and the
    reductions may order sums differently)."""
    import warnings

    rng = np.random.RandomState(0)
    X = rng.randn(600, 40).astype(dtype)
    y = rng.randint(0, 10, 600)
    fits = []
    for n_threads in (1, 1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(MLPClassifier((100, 100), batch_size=100, max_iter=3, random_state=0,
                                      tol=0, n_threads=n_threads).fit(X, y)._theta)
    np.testing.assert_array_equal(fits[0], fits[1])
    tol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(fits[2], fits[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 8193, 70000])
def test_guard_finds_any_non_finite_value(n, dtype):
    g = np.random.default_rng(0).standard_normal(n).astype(dtype)
    big = np.finfo(dtype).max
    g[n // 2] = -big
    g[0] = np.finfo(dtype).smallest_subnormal
    for threads in (1, 2):
        assert _kernels.finite(g, threads)
    for bad in (np.nan, np.inf, -np.inf):
        for where in {0, n // 2, n - 1}:
            h = g.copy()
            h[where] = bad
            for threads in (1, 2):
                assert not _kernels.finite(h, threads), (bad, where, threads)


@pytest.mark.parametrize("cap", [2, 1])
def test_vector_exp_agrees_with_libm(cap):
    """The softmax's exp (float64; AVX-512, and AVX2 with its 2^n in two
    products) to an ulp of numpy's, over the range a shifted logit takes,
    and its limits: 0 below the range, NaN kept, inf above, the row's tail
    lengths (partial vectors)."""
    if _kernels.isa() < cap:
        pytest.skip("the CPU lacks this instruction set")
    rng = np.random.default_rng(0)
    x = np.concatenate([-rng.random(4000) * 750, -rng.random(4000) * 2,
                        -np.logspace(-300, 3, 997), [0.0, -0.0, -1e-320],
                        rng.random(50) * 709.7, [709.78, -708.4, -744.0]])
    old = _kernels.set_isa_cap(cap)
    try:
        for n in (len(x), 1, 3, 7, 10, 17):
            z = x[:n] + 3.0
            expected = np.exp(z - 3.0)
            assert _kernels.exp_shift(z, 3.0)
            tiny = np.finfo(np.float64).tiny
            normal = expected >= tiny
            ulp = np.spacing(expected[normal])
            assert np.all(np.abs(z[normal] - expected[normal]) <= ulp)
            assert np.all(z[~normal] <= tiny)  # subnormals may flush to 0
        z = np.array([np.nan, -np.inf, -800.0, 0.0, 1.0, 711.0, np.inf])
        _kernels.exp_shift(z, 0.0)
        assert np.isnan(z[0]) and z[1] == 0 and z[2] == 0 and z[3] == 1
        assert z[4] == pytest.approx(np.e, rel=1e-15)
        assert z[5] == np.inf and z[6] == np.inf
    finally:
        _kernels.set_isa_cap(old)


def test_vector_exp_float32_within_an_ulp():
    """The float32 softmax's exp (AVX2, degree-7 polynomial) within an ulp
    of the exact value over a shifted logit's range, and its limits."""
    if _kernels.isa() < 1:
        pytest.skip("no AVX2")
    rng = np.random.default_rng(2)
    x = np.concatenate([-rng.random(20000) * 104, -rng.random(4000) * 2,
                        rng.random(2000) * 88.7, [0.0, -0.0, 88.72, -87.3]]).astype(np.float32)
    for n in (len(x), 1, 5, 8, 9, 17):
        z = x[:n] + np.float32(3)
        exact = np.exp((z - np.float32(3)).astype(np.float64))
        assert _kernels.exp_shift(z, 3.0)
        normal = exact >= np.finfo(np.float32).tiny
        ulp = np.spacing(exact[normal].astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(z[normal] - exact[normal]) <= ulp)
        assert np.all(z[~normal] <= np.finfo(np.float32).tiny)
    z = np.array([np.nan, -np.inf, -200.0, 0.0, 1.0, 89.0, np.inf], np.float32)
    _kernels.exp_shift(z, 0.0)
    assert np.isnan(z[0]) and z[1] == 0 and z[2] == 0 and z[3] == 1
    assert z[4] == np.float32(np.e) and z[5] == np.inf and z[6] == np.inf


def test_vector_exp_same_bits_on_avx2_and_avx512():
    """vscalefpd's 2^n and AVX2's two products round alike, subnormal
    results included."""
    if _kernels.isa() < 2:
        pytest.skip("no AVX-512 to compare with")
    rng = np.random.default_rng(1)
    x = np.concatenate([-rng.random(5000) * 750, rng.random(500) * 710,
                        np.linspace(-746, -700, 999), [np.nan, -np.inf, np.inf]])
    out = []
    for cap in (2, 1):
        old = _kernels.set_isa_cap(cap)
        try:
            z = x.copy()
            assert _kernels.exp_shift(z, 0.0)
        finally:
            _kernels.set_isa_cap(old)
        out.append(z.tobytes())
    assert out[0] == out[1]


def softmax_reference(Z, b, t, w):
    z = Z + b
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(z))
    delta = e / s * w[:, None]
    delta[rows, t] -= w
    return (m[:, 0] + np.log(s[:, 0]) - z[rows, t]) * w, delta


@pytest.mark.parametrize("k", [2, 10, 16, 17])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 32, 101])
def test_softmax_log_loss_rows_against_numpy_and_the_scalar_loop(n, k, dtype):
    """The class-index softmax loss and delta, a row to a vector lane on
    AVX-512 and AVX2 (k <= 16; lanes left idle by the last rows), against
    numpy and against the plain loop, for every class-index width, with and
    without sample weights; the two instruction sets give the same bits.
    float32: eight rows to an AVX2 vector on both."""
    rng = np.random.default_rng(n * k)
    n_all = 3 * n + 5
    rows = rng.permutation(n_all)[:n].astype(np.int64)
    Z = (rng.standard_normal((n, k)) * 4).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    labels = rng.integers(0, k, n_all)
    f32 = dtype == np.float32
    # float32: the target's delta w (p - 1) and the loss cancel to an ulp of w
    rtol, atol_loss, atol = (1e-5, 2e-6, 1e-7) if f32 else (1e-13, 1e-15, 1e-16)
    for sw in (None, (rng.random(n_all) + 0.5).astype(dtype)):
        w = 0.25 * (sw[rows].astype(np.float64) if sw is not None else np.ones(n))
        want_loss, want_delta = softmax_reference(Z.astype(np.float64), b.astype(np.float64),
                                                  labels[rows], w)
        for cls_dtype in (np.uint8, np.uint16, np.int32, np.int64):
            bits = {}
            for cap in (2, 1, 0):
                old = _kernels.set_isa_cap(cap)
                try:
                    D = Z.copy()
                    loss = _kernels.softmax_log_loss(D, b, labels.astype(cls_dtype), rows,
                                                     sw, 0.25)
                finally:
                    _kernels.set_isa_cap(old)
                np.testing.assert_allclose(loss, want_loss, rtol=rtol, atol=atol_loss)
                np.testing.assert_allclose(D, want_delta, rtol=rtol, atol=atol)
                bits[min(cap, _kernels.isa())] = (loss.tobytes(), D.tobytes())
            if k <= 16 and 1 in bits and 2 in bits:
                assert bits[1] == bits[2]


def test_softmax_log_loss_same_bits_on_any_thread_count(dtype):
    rng = np.random.default_rng(5)
    n, k = 1001, 10  # above the rows' threading threshold, a partial last block
    Z = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    labels = rng.integers(0, k, n).astype(np.uint8)
    rows = rng.permutation(n).astype(np.int64)
    out = []
    for threads in (1, 2, 3):
        D = Z.copy()
        loss = _kernels.softmax_log_loss(D, b, labels, rows, None, 1 / n, threads)
        out.append((loss.tobytes(), D.tobytes()))
    assert out[0] == out[1] == out[2]


def test_softmax_log_loss_of_non_finite_outputs():
    """A NaN output makes its row's loss NaN (the epoch's guard stops
    there); a row of -inf beside finite outputs gives them all the mass."""
    Z = np.array([[0.0, np.nan, 1.0], [0.0, -np.inf, 1.0], [np.inf, 0.0, 0.0]])
    D = Z.copy()
    loss = _kernels.softmax_log_loss(D, np.zeros(3), np.array([0, 0, 1], np.uint8),
                                     np.arange(3, dtype=np.int64))
    assert np.isnan(loss[0]) and np.isfinite(loss[1]) and not np.isfinite(loss[2])
    assert D[1, 1] == 0 and np.isclose(D[1].sum(), 0)


@pytest.mark.parametrize("kind", ["nn", "tn"])
@pytest.mark.parametrize("shape", [(32, 64, 100), (7, 13, 5), (100, 40, 100), (1, 3, 17),
                                   (33, 1, 9), (40, 200, 24)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_rows_by_index_give_the_gathered_products_bits(kind, shape, n_threads, dtype):
    # A batch's input rows read in place (the first layer's products):
    # every row order, repeats, a row stride beyond the row's length.
    if _kernels.isa() == 0:
        pytest.skip("no AVX2: the products use BLAS")
    rng = np.random.default_rng(1)
    b, n_in, n_out = shape
    X = np.zeros((300, n_in + 3), dtype)[:, 1:1 + n_in]
    X[:] = rng.standard_normal((300, n_in))
    rows = rng.integers(0, 300, b).astype(np.int64)
    B = rng.standard_normal((n_in, n_out) if kind == "nn" else (b, n_out)).astype(dtype)
    want = np.zeros((b, n_out) if kind == "nn" else (n_in, n_out), dtype)
    got = np.zeros_like(want)
    assert _kernels.product(kind, np.ascontiguousarray(X[rows]), B, want, n_threads=n_threads)
    assert _kernels.product(kind, X, B, got, rows=rows, n_threads=n_threads)
    assert np.array_equal(got, want)
    _kernels.product(kind, X, B, got, accumulate=True, rows=rows, n_threads=n_threads)
    assert np.array_equal(got, 2 * want)


def test_rows_by_index_are_checked():
    X = np.ones((5, 3))
    C = np.zeros((2, 4))
    with pytest.raises(ValueError, match="out of range"):
        _kernels.product("nn", X, np.ones((3, 4)), C, rows=np.array([0, 5]))
    with pytest.raises(ValueError, match="nn and tn"):
        _kernels.product("nt", X, np.ones((4, 3)), np.zeros((2, 4)), rows=np.array([0, 1]))


# ------------------------------------------- Adam fused into A^T delta (tn_adam)
@needs_kernels
@pytest.mark.parametrize("shape", [(32, 64, 100), (7, 9, 17), (1, 3, 5), (40, 13, 33),
                                   (100, 40, 100), (5, 100, 8)], ids=str)
@pytest.mark.parametrize("l2", [0.0, 1e-3])
@pytest.mark.parametrize("by_index", [False, True])
def test_adam_fused_into_the_product_is_the_separate_step(isa_cap, shape, l2, by_index, dtype):
    # The weight gradient A^T D is consumed in registers: float32 gives the
    # bits of the product then the separate kernel (exact square root and
    # quotient both); float64's Newton-step quotients fall on other vectors,
    # each within a few ulp of the exact one.
    k, n_in, n_out = shape
    rng = np.random.default_rng(k * n_in + n_out)
    X = rng.standard_normal((3 * k + 2, n_in)).astype(dtype)
    rows = rng.permutation(X.shape[0])[:k].astype(np.int64)
    A = X if by_index else X[rows]
    D = (rng.standard_normal((k, n_out)) * 0.1).astype(dtype)
    th = rng.standard_normal((n_in, n_out)).astype(dtype)
    m = (rng.standard_normal((n_in, n_out)) * 1e-2).astype(dtype)
    v = (rng.random((n_in, n_out)) * 1e-3).astype(dtype)
    v.flat[:3] = 0
    hyper = (1e-3, 0.9, 0.999, 1e-8)
    g = np.zeros((n_in, n_out), dtype)
    _kernels.product("tn", X[rows], D, g)
    want = [a.ravel().copy() for a in (th, m, v)]
    sq_want = _kernels.adam(want[0], g.ravel().copy(), want[1], want[2], *hyper, l2)[0]
    got = [a.copy() for a in (th, m, v)]
    sq, bad = _kernels.adam_product(A, D, *got, *hyper, l2, rows=rows if by_index else None)
    assert bad == 0
    assert not np.array_equal(got[0], th)
    np.testing.assert_allclose(sq, sq_want if l2 else 0.0, rtol=1e-12)
    if dtype == np.float32:
        for a, b in zip(got, want):
            assert np.array_equal(a.ravel(), b)
    else:
        assert np.array_equal(got[1].ravel(), want[1]) and np.array_equal(got[2].ravel(), want[2])
        step = np.abs(want[0] - th.ravel())
        assert np.all(np.abs(got[0].ravel() - want[0]) <= 8 * np.finfo(dtype).eps * step
                      + np.finfo(dtype).eps * np.abs(want[0]))


@needs_kernels
@pytest.mark.parametrize("where", [(0, 0), (3, 30), (6, 99), (63, 97)])
def test_adam_fused_into_the_product_reports_non_finite_parameters(isa_cap, where, dtype):
    # A row of the first, an inner and the last (masked) vector of a block
    k, n_in, n_out = 32, 64, 100
    A, D = np.ones((k, n_in), dtype), np.ones((k, n_out), dtype)
    th, m, v = (np.ones((n_in, n_out), dtype) for _ in range(3))
    assert _kernels.adam_product(A, D, th, m, v, 1e-3, 0.9, 0.999, 1e-8)[1] == 0
    th[where] = np.nan
    assert _kernels.adam_product(A, D, th, m, v, 1e-3, 0.9, 0.999, 1e-8)[1] == 1
    th, m, v = (np.ones((n_in, n_out), dtype) for _ in range(3))
    A[5, where[0]] = np.inf
    assert _kernels.adam_product(A, D, th, m, v, 1e-3, 0.9, 0.999, 1e-8)[1] == 1


def test_adam_fused_into_the_product_checks_its_operands():
    a = np.ones((4, 3))
    with pytest.raises(ValueError, match="same number of rows"):
        _kernels.adam_product(a, np.ones((5, 2)), *(np.ones((3, 2)) for _ in range(3)),
                              1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="row indices"):
        _kernels.adam_product(a, np.ones((2, 2)), *(np.ones((3, 2)) for _ in range(3)),
                              1e-3, 0.9, 0.999, 1e-8, rows=[0, 4])
    with pytest.raises(ValueError, match="shapes differ"):
        _kernels.adam_product(a, np.ones((4, 2)), np.ones((3, 2)), np.ones((3, 2)),
                              np.ones((2, 2)), 1e-3, 0.9, 0.999, 1e-8)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 16, 17, 100, 1001])
def test_sum_of_squares_agrees_with_numpy(n, dtype):
    x = np.random.default_rng(n).standard_normal(n).astype(dtype) * 1e3
    np.testing.assert_allclose(_kernels.squares(x), (x.astype(np.float64) ** 2).sum(),
                               rtol=1e-12)
    if n:
        x[n // 2] = np.nan
        assert np.isnan(_kernels.squares(x))
        x[n // 2] = np.finfo(dtype).max
        # float32 squares in double do not overflow; float64's largest does
        got = _kernels.squares(x)
        assert np.isinf(got) if dtype == np.float64 else got > float(np.finfo(dtype).max)
