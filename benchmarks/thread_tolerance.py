"""How far results move when only the thread count changes.

Same data and random_state, n_threads=1 vs 2 and 4: prints, per setting, the
largest relative difference of the fitted weights (max |a - b| / max |a|)
and of predict_proba. Run: ``python benchmarks/thread_tolerance.py``.
"""

import warnings

import numpy as np
from sklearn.datasets import make_classification

from fastmlp import MLPClassifier

warnings.simplefilter("ignore")
X, y = make_classification(4000, 64, n_informative=20, n_classes=5, random_state=0)
print(f"{'dtype':8} {'solver':6} {'epochs':>6}  {'threads':>7}  {'coefs rel. diff':>15}  "
      f"{'proba abs. diff':>15}")
for dtype in (np.float64, np.float32):
    Xd = X.astype(dtype)
    for solver, epochs in (("adam", 5), ("adam", 50), ("sgd", 50), ("lbfgs", 50)):
        kw = dict(hidden_layer_sizes=(256, 128), solver=solver, max_iter=epochs,
                  random_state=0, batch_size=256)
        ref = MLPClassifier(n_threads=1, **kw).fit(Xd, y)
        p_ref = ref.predict_proba(Xd)
        for n in (2, 4):
            est = MLPClassifier(n_threads=n, **kw).fit(Xd, y)
            rel = max(float(np.abs(a - b).max() / np.abs(a).max())
                      for a, b in zip(ref.coefs_, est.coefs_))
            dp = float(np.abs(est.predict_proba(Xd) - p_ref).max())
            print(f"{np.dtype(dtype).name:8} {solver:6} {epochs:6d}  {'1 vs %d' % n:>7}  "
                  f"{rel:15.2e}  {dp:15.2e}")
