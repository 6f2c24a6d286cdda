"""What the places where things happen call: `event_emit` and `labeled_note`, both acting once the current
transaction commits, so that a change rolled back tells nobody. This module imports nothing from the apps that
call it; the work is done by webhooks.services when the callback runs."""

from typing import Any

from django.db import transaction


def event_emit(*, project_id: int, event: str, data: dict[str, Any]) -> None:
    """Tell the project's webhooks of `event` once the current transaction commits (at once outside one)."""

    def deliver() -> None:
        from webhooks.services import deliveries_create

        deliveries_create(project_id, event, data)

    transaction.on_commit(deliver)


def labeled_note(*, project, document_id: int) -> None:
    """A document was labeled: noted on commit and sent with the others labeled within
    DOCKET_WEBHOOK_LABELED_BATCH_SECONDS as one `documents.labeled` delivery, not one request per answer.
    Nothing at all happens (no query) in a project where no webhook receives `documents.labeled`."""
    if "documents.labeled" not in (project.webhook_events or []):
        return
    project_id = project.pk

    def note() -> None:
        from webhooks.services import labeled_notice_add

        labeled_notice_add(project_id, document_id)

    transaction.on_commit(note)
