"""Domain errors of the learning loop's services; views turn them into messages, the API into statuses."""

from annotation.exceptions import DocketError


class ModelSwitchRefused(DocketError):
    """A promotion or rollback that cannot happen (the version failed, is still training, or nothing to go back to)."""


class TrainingRefused(DocketError):
    """A training run that cannot train on what is labelled; the message says what to label first."""


class RunAbandoned(DocketError):
    """The run was marked failed while this worker still held it (it looked dead); the worker stops quietly."""


class ActiveVersionChanged(ModelSwitchRefused):
    """A promotion or rollback that expected another version to be serving (a retry, or someone went first)."""

    def __init__(self, *, expected: int, active: int | None) -> None:
        serving = f"v{active} serves now" if active is not None else "no version serves now"
        super().__init__(f"Expected v{expected} to be serving, but {serving}; nothing was changed.")
        self.expected = expected
        self.active = active


class BundleUnavailable(DocketError):
    """A model version that cannot be exported as a bundle (none yet, still training, failed, or files pruned)."""


class ScoresRejected(DocketError):
    """Scores made elsewhere that cannot be stored: another model version, or columns this project lacks."""


class EmbeddingsRejected(DocketError):
    """Embeddings made elsewhere that cannot be stored: another body, another width, or ids of other projects."""


class NoReembeddingWaiting(DocketError):
    """An export for a fine-tune's re-embedding when no run of the project waits for one."""
