"""Checkpoints: what a fit records after each epoch so that it can resume.

With ``checkpoint=PATH`` a first-order fit saves the whole estimator after
every epoch (fastmlp.save's format, written atomically), plus a resume
record: the order the training rows have been shuffled into (the epoch
shuffles that permutation in place), the validation rows, and a fingerprint
of the data. The shuffling generator's state, the optimiser's state and the
epoch counter are fitted attributes and are saved with the rest.
``fastmlp.load(PATH).fit(X, y)`` then runs the remaining epochs and ends
bit-identical to a run that was never interrupted.
"""

import zlib

import numpy as np

# Rows of X that enter the fingerprint (evenly spaced): enough to tell data
# sets apart, cheap for any size.
FINGERPRINT_ROWS = 256
# Class indices converted for the checksum per chunk of this many.
FINGERPRINT_CHUNK = 8192


def fingerprint(X, Y, sample_weight):
    """A summary of the training data that a resumed fit must match."""
    n = Y.shape[0]
    if Y.ndim == 1:
        # Class indices, of whichever width the fit keeps them in: checksummed
        # as int32, the one width they had when checkpoints began, so that
        # those checkpoints still resume. A chunk at a time, not a copy of Y.
        crc = 0
        for start in range(0, n, FINGERPRINT_CHUNK):
            crc = zlib.crc32(Y[start:start + FINGERPRINT_CHUNK].astype(np.int32).view(np.uint8),
                             crc)
    else:
        crc = zlib.crc32(np.ascontiguousarray(Y).view(np.uint8))
    if sample_weight is not None:
        crc = zlib.crc32(np.ascontiguousarray(sample_weight).view(np.uint8), crc)
    rows = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).astype(np.int64))
    if hasattr(X, "indptr"):
        sample = X[rows].toarray()
        crc = zlib.crc32(np.ascontiguousarray(X.indptr).view(np.uint8), crc)
    else:
        sample = X[rows]
    crc = zlib.crc32(np.ascontiguousarray(sample).view(np.uint8), crc)
    return {"n_samples": int(n), "n_features": int(X.shape[1]), "dtype": X.dtype.str,
            "crc32": crc & 0xFFFFFFFF}


def resume_rows(record, X, Y, sample_weight, early_stopping):
    """The (train_rows, val_rows) a checkpoint saved, checked against the data.

    Raises ValueError if the checkpoint was written for other data or for
    other settings, or if its rows are not a partition of the samples.
    """
    expected = fingerprint(X, Y, sample_weight)
    if record["fingerprint"] != expected:
        saved = record["fingerprint"]
        raise ValueError(
            "this checkpoint was written while fitting other data (it recorded "
            f"{saved.get('n_samples')} samples x {saved.get('n_features')} features, "
            f"dtype {saved.get('dtype')}, checksum {saved.get('crc32')}; this data has "
            f"{expected['n_samples']} x {expected['n_features']}, dtype {expected['dtype']}, "
            f"checksum {expected['crc32']}): resume with the same X, y and sample_weight"
        )
    train, val = record["train_rows"], record["val_rows"]
    if (val is not None) != bool(early_stopping):
        raise ValueError("this checkpoint was written with a different early_stopping setting")
    n = Y.shape[0]
    if not isinstance(train, np.ndarray):  # all rows, in a keyed order
        if train != n:
            raise ValueError(f"the checkpoint's row count {train} is not the {n} samples'")
        return train, val
    rows = train if val is None else np.concatenate([train, val])
    if (rows.shape[0] != n or (n and (rows.min() < 0 or rows.max() >= n))
            or not (np.bincount(rows, minlength=n) == 1).all()):
        raise ValueError("the checkpoint's training and validation rows are not a "
                         f"partition of the {n} samples")
    return train, val
