"""Domain errors raised by annotation services; views and the API turn them into messages and statuses."""


class DocketError(Exception):
    """Base for errors a person can act on; `str(error)` is the message to show."""


class ProjectNotFound(DocketError):
    """The project does not exist or the user is not a member (the two look the same from outside)."""


class NotAllowed(DocketError):
    """The user is a member, but their role does not allow this."""


class ImportRejected(DocketError):
    """The whole file was refused; nothing from it was stored."""


class LabelInUse(DocketError):
    """A label that annotations use cannot be deleted."""


class InvalidLabels(DocketError):
    """A submission names labels the project does not offer."""


class LabelsChanged(InvalidLabels):
    """The taxonomy changed while an answer (or a taxonomy change) was on its way: reload and do it again."""


class TaxonomyInvalid(DocketError):
    """A taxonomy change or file that would leave the label set inconsistent (bad key, cycle, clash)."""


class LastAdmin(DocketError):
    """The change would leave a project without an admin."""


class AlreadyMember(DocketError):
    """The person is a member of the project already."""


class NotServed(DocketError):
    """A submission for a document that was not served to this reviewer's page (or whose ticket is forged)."""


class InputRejected(DocketError):
    """What was sent cannot be read or stored safely (too deeply nested, a NUL character, a YAML alias).

    `where` names the place in the input (e.g. `documents[3].metadata.note`), or is "" for the whole of it.
    """

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(message)
        self.where = where


class FlagResolved(DocketError):
    """The flag was resolved already (by someone else, or in another tab)."""


class NothingToLabel(DocketError):
    """A bulk labeling whose selection holds no document it may change (all gold, held, leased or unchanged)."""


class BatchAlreadyUndone(DocketError):
    """The bulk batch was undone already (by someone else, or in another tab)."""
