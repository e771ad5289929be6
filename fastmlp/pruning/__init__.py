"""Pruning fitted networks: fewer weights, smaller files, faster predictions.

Unstructured pruning (:func:`prune_magnitude`) removes individual weights;
a pruned layer's ``coefs_[l]`` becomes a ``scipy.sparse.csc_matrix`` of the
survivors, which the compiled kernels multiply at a cost proportional to
the number of survivors. Structured pruning (:func:`prune_units`) removes
whole hidden units, shrinking the dense matrices. :func:`retrain` trains
the survivors further with the pattern fixed, and :func:`prune_retrain`
alternates the two on a schedule (Han et al., 2015, "Learning both weights
and connections for efficient neural networks").

All functions work in place on a fitted ``MLPClassifier`` or
``MLPRegressor`` and return it; ``copy.deepcopy`` the estimator first to
keep the original. ``estimator.sparsity_`` reports the fraction of each
layer's weights removed.
"""

from ._magnitude import prune_magnitude
from ._retrain import prune_retrain, retrain, sparsity_schedule
from ._units import prune_units

__all__ = ["prune_magnitude", "prune_units", "retrain", "prune_retrain", "sparsity_schedule",
           "kernel_choice"]


def kernel_choice(estimator):
    """How each layer's product is computed: 'gemm' (dense layer),
    'sparse' (the sparse kernels) or 'gemm on dense copy' (a pruned layer
    still too dense for the sparse kernels to be faster)."""
    from .._network import SP_GEMM, SP_KERNEL
    from ._rebuild import check_fitted_mlp

    check_fitted_mlp(estimator)._theta  # the layout follows coefs_
    names = {SP_KERNEL: "sparse", SP_GEMM: "gemm on dense copy"}
    return [names.get(int(m), "gemm") for m in estimator._layout.sp_mode]
