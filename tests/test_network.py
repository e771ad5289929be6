"""Layout: the flat parameter vector, with dense and pruned (CSC) layers."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp._network import SP_DENSE, SP_GEMM, SP_KERNEL, Layout


def sparse_coefs(rng, units, density, dtype=np.float64):
    return [sp.random(a, b, density=density, format="csc", random_state=rng, dtype=dtype)
            for a, b in zip(units[:-1], units[1:])]


def test_sparse_views_share_theta():
    rng = np.random.RandomState(0)
    coefs = sparse_coefs(rng, [6, 5, 3], 0.4)
    coefs[1] = rng.randn(5, 3)  # a dense layer among sparse ones
    layout = Layout.from_coefs(coefs, ["relu", "softmax"])
    assert layout.is_sparse(0) and not layout.is_sparse(1)
    assert layout.n_params == coefs[0].nnz + 5 + 15 + 3
    intercepts = [rng.randn(5), rng.randn(3)]
    theta = layout.pack(coefs, intercepts, np.float64)
    views, b = layout.views(theta)
    assert sp.isspmatrix_csc(views[0]) and views[0].data.base is theta
    np.testing.assert_array_equal(views[0].toarray(), coefs[0].toarray())
    np.testing.assert_array_equal(views[1], coefs[1])
    views[0].data[0] = 42.0  # writes through to theta
    assert theta[layout.coef_slice(0)][0] == 42.0
    assert layout.density(0) == pytest.approx(coefs[0].nnz / 30)
    # Only stored weights are weights for the penalties and update pieces.
    assert layout.weight_mask().sum() == coefs[0].nnz + 15


def test_structure_is_canonicalised_and_checked():
    W = sp.coo_matrix(([1.0, 2.0, 3.0], ([2, 0, 1], [0, 0, 1])), shape=(3, 2))
    layout = Layout.from_coefs([W], ["identity"])
    indptr, indices = layout.structure[0]
    assert list(indptr) == [0, 2, 3] and list(indices) == [0, 2, 1]
    assert not indices.flags.writeable
    theta = layout.pack([W], [np.zeros(2)], np.float64)
    np.testing.assert_array_equal(theta[:3], [2.0, 1.0, 3.0])
    with pytest.raises(ValueError, match="canonical CSC"):
        Layout([3, 2], ["identity"], structure=[([0, 2, 3], [2, 0, 1])])  # unsorted
    with pytest.raises(ValueError, match="canonical CSC"):
        Layout([3, 2], ["identity"], structure=[([0, 1, 2], [0, 3])])  # out of range
    other = sp.csc_matrix(np.eye(3, 2))
    with pytest.raises(ValueError, match="sparsity pattern"):
        layout.pack([other], [np.zeros(2)], np.float64)
    with pytest.raises(ValueError, match="must be a sparse matrix"):
        layout.pack([np.ones((3, 2))], [np.zeros(2)], np.float64)


def test_explicit_zeros_are_kept():
    W = sp.csc_matrix((np.array([0.0, 1.0]), np.array([0, 1]), np.array([0, 2])), shape=(2, 1))
    assert W.nnz == 2
    assert Layout.from_coefs([W], ["identity"]).w_size[0] == 2


def test_kernel_choice_by_density():
    rng = np.random.RandomState(0)
    coefs = [sp.random(50, 40, density=0.05, format="csc", random_state=rng),
             sp.random(40, 30, density=0.8, format="csc", random_state=rng),
             rng.randn(30, 2)]
    layout = Layout.from_coefs(coefs, ["relu", "relu", "identity"])
    assert list(layout.sp_mode) == [SP_KERNEL, SP_GEMM, SP_DENSE]
    forced = Layout.from_coefs(coefs, ["relu", "relu", "identity"], max_sparse_density=1.0)
    assert list(forced.sp_mode) == [SP_KERNEL, SP_KERNEL, SP_DENSE]
    dense_len, per_row = layout.work_sizes
    assert dense_len == coefs[0].nnz + 2 * 40 * 30 and per_row == 50 + 2 * 40
    assert Layout([4, 3], ["identity"]).work_len(100) == 1  # nothing to hold


def test_csr_tables_point_back_to_theta_order():
    rng = np.random.RandomState(1)
    W = sp.random(7, 5, density=0.5, format="csc", random_state=rng)
    layout = Layout.from_coefs([W], ["identity"])
    pool = layout.sp_pool[int(layout.sp_off[0]):]
    nnz = W.nnz
    row_ptr = pool[6 + nnz:6 + nnz + 8]
    col_idx = pool[14 + nnz:14 + 2 * nnz]
    perm = pool[14 + 2 * nnz:14 + 3 * nnz]
    csr = W.tocsr()
    np.testing.assert_array_equal(row_ptr, csr.indptr)
    np.testing.assert_array_equal(col_idx, csr.indices)
    np.testing.assert_array_equal(W.data[perm], csr.data)
