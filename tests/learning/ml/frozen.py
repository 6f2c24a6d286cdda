"""One frozen body for the whole ml test package: loading it is the slowest step of these tests.

A cached function rather than a conftest fixture, so these tests also run with `--noconftest -p no:django`
(no Django at all), which is what a package that imports no Django should allow.
"""

import functools

from learning.ml.classifier import Classifier, TrainingArgs


@functools.cache
def frozen_body() -> Classifier:
    """An untrained classifier on the bundled base model; tests derive their own with `on_same_body`."""
    return Classifier.create(["a", "b"], multi_label=False, args=TrainingArgs(seed=3))
