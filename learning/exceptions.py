"""Domain errors of the learning loop's services; views turn them into messages, the API into statuses."""

from annotation.exceptions import DocketError


class ModelSwitchRefused(DocketError):
    """A promotion or rollback that cannot happen (the version failed, is still training, or nothing to go back to)."""


class TrainingRefused(DocketError):
    """A training run that cannot train on what is labelled; the message says what to label first."""


class RunAbandoned(DocketError):
    """The run was marked failed while this worker still held it (it looked dead); the worker stops quietly."""
