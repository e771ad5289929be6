"""Seeded random states on reused generators: the streams of fresh ones."""

import threading
import warnings

import numpy as np
import pytest

from fastmlp import MLPClassifier, _seeding


@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 - 1, np.int64(7), True])
def test_a_reused_generator_gives_the_stream_of_a_fresh_one(seed):
    first, release = _seeding.seeded_random_state(123)
    first.normal(size=5)  # leave a cached Gaussian and an advanced state behind
    release()
    for _ in range(2):
        rs, release = _seeding.seeded_random_state(seed)
        ref = np.random.RandomState(seed)
        np.testing.assert_array_equal(rs.normal(size=3), ref.normal(size=3))
        np.testing.assert_array_equal(rs.uniform(size=7), ref.uniform(size=7))
        assert rs.randint(0, 2**63 - 1, dtype=np.int64) == ref.randint(0, 2**63 - 1,
                                                                       dtype=np.int64)
        release()


def test_other_seeds_are_check_random_states():
    mine = np.random.RandomState(3)
    rs, release = _seeding.seeded_random_state(mine)
    assert rs is mine
    release()
    rs, _ = _seeding.seeded_random_state(None)
    assert rs is np.random.mtrand._rand


def test_generators_in_use_are_never_shared():
    a, release_a = _seeding.seeded_random_state(0)
    b, release_b = _seeding.seeded_random_state(0)
    assert a._bit_generator is not b._bit_generator
    release_a()
    release_b()
    assert len(_seeding._IDLE) <= _seeding._MAX_IDLE


def test_fits_in_threads_and_nested_fits_are_reproducible():
    X = np.random.RandomState(0).rand(200, 6)
    y = (X[:, 0] > 0.5).astype(int)
    kw = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0, n_threads=1)

    class FitInside:
        def on_train_begin(self, est):  # a fit while the outer one holds its generator
            MLPClassifier(**{**kw, "random_state": 1}).fit(X, y)

        def on_epoch_end(self, est, info):
            return False

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MLPClassifier(**kw).fit(X, y)
        nested = MLPClassifier(callbacks=[FitInside()], **kw).fit(X, y)
        results = [None] * 4

        def fit(i):
            results[i] = MLPClassifier(**kw).fit(X, y)

        threads = [threading.Thread(target=fit, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for est in [nested] + results:
        for a, b in zip(est.coefs_, ref.coefs_):
            np.testing.assert_array_equal(a, b)
