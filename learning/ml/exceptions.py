"""Domain exceptions of the machine-learning core, raised with messages a privacy officer can act on."""


class TrainingError(Exception):
    """Training cannot run on what was given; the message says why in the office's words."""


class NotEnoughLabels(TrainingError):
    """Too few labelled documents, or not enough different labels among them, to fit a classifier."""


class UnknownLabel(TrainingError):
    """A training target names a label that is not in the classifier's taxonomy."""


class ModelNotTrained(Exception):
    """Prediction was asked of a classifier whose head was never fitted."""


class ModelFormatError(Exception):
    """A saved model directory is missing Docket's metadata or does not match it."""


class UnknownStrategy(KeyError):
    """A query strategy name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown strategy"


class FineTuneInterrupted(Exception):
    """The process was asked to stop mid fine-tune; a checkpoint was saved to resume from."""

    def __init__(self, steps_done: int, steps: int) -> None:
        super().__init__(f"fine-tuning stopped after {steps_done} of {steps} steps; a checkpoint was saved")
        self.steps_done = steps_done
        self.steps = steps
