"""The measuring kernels of src/_shared_product.pyx compute X @ W exactly as
scipy does, from float weights or from codebook indices."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp._shared_product import csc_product, csc_shared_product


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 7])
def test_products_match_scipy(dtype, rows):
    rng = np.random.default_rng(rows)
    codebook = rng.standard_normal(32).astype(dtype)
    W = sp.random(50, 20, density=0.1, format="csc", random_state=0)
    codes = rng.integers(0, 32, W.nnz).astype(np.uint8)
    W.data = codebook[codes]
    indptr, indices = W.indptr.astype(np.int32), W.indices.astype(np.int32)
    X = rng.standard_normal((rows, 50)).astype(dtype)
    want = (sp.csr_matrix(X.astype(np.float64)) @ W.astype(np.float64)).toarray()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for product, values in ((csc_product, W.data), (csc_shared_product, None)):
        out = np.full((rows, 20), np.nan, dtype=dtype)
        if values is None:
            product(X, indptr, indices, codes, codebook, out)
        else:
            product(X, indptr, indices, values, out)
        np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


def test_shapes_are_checked():
    X = np.zeros((2, 3))
    with pytest.raises(ValueError, match="same rows"):
        csc_product(X, np.zeros(3, dtype=np.int32), np.zeros(0, dtype=np.int32),
                    np.zeros(0), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="n_out \\+ 1"):
        csc_shared_product(X, np.zeros(2, dtype=np.int32), np.zeros(0, dtype=np.int32),
                           np.zeros(0, dtype=np.uint8), np.zeros(1), np.zeros((2, 2)))
