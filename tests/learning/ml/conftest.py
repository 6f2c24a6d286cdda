"""One frozen body for the whole ml test package: loading it is the slowest step of these tests."""

import pytest

from learning.ml.classifier import Classifier, TrainingArgs


@pytest.fixture(scope="session")
def frozen_body():
    """An untrained classifier on the bundled base model; tests derive their own with `on_same_body`."""
    return Classifier.create(["a", "b"], multi_label=False, args=TrainingArgs(seed=3))
