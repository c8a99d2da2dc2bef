"""A job's classifier answers big batches in chunks and reports each (`ecglens.service.jobs.RowProgress`), so the
progress bar moves inside a long batched call; the answers are the classifier's own."""

import numpy as np

from ecglens.service.jobs import RowProgress


class Linear:
    class_names = ("a", "b")
    thresholds = {"a": 0.4}

    def __init__(self):
        self.calls = []

    def predict_proba(self, batch):
        self.calls.append(len(batch))
        x = np.asarray(batch, dtype=np.float64).reshape(len(batch), -1).mean(axis=1)
        p = 1 / (1 + np.exp(-x))
        return np.stack([p, 1 - p], axis=1)


def test_big_batches_are_answered_in_chunks_each_reported_and_the_answers_are_the_same():
    clf, seen = Linear(), []
    wrapped = RowProgress(clf, seen.append, chunk=16)
    batch = np.random.default_rng(0).normal(size=(40, 2, 50)).astype(np.float32)
    out = wrapped.predict_proba(batch)
    assert clf.calls == [16, 16, 8] and seen == [16, 32, 40] and wrapped.rows == 40
    np.testing.assert_array_equal(out, Linear().predict_proba(batch))
    # Small batches pass in one call; the card fields pass through.
    wrapped.predict_proba(batch[:3])
    assert clf.calls[-1] == 3 and seen[-1] == 43
    assert wrapped.class_names == ("a", "b") and wrapped.thresholds == {"a": 0.4}
