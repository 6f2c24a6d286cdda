"""Input of the reviewer pages and their JSON calls, checked before any service sees it."""

from django import forms
from django.core.exceptions import ValidationError


class KeyListField(forms.Field):
    """A JSON list of label keys (strings)."""

    def to_python(self, value):
        if value in (None, ""):
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValidationError("Send a list of label keys.", code="invalid")
        if len(value) > 200:
            raise ValidationError("Too many labels.", code="invalid")
        return [item.strip() for item in value if item.strip()]


class NextDocumentForm(forms.Form):
    after = forms.IntegerField(required=False, min_value=1)


class SubmissionForm(forms.Form):
    labels = KeyListField(required=False)
    # The ticket that came with the document (annotation.services.labeling.serve_ticket_issue).
    ticket = forms.CharField(
        max_length=500,
        error_messages={"required": "This answer carries no ticket of the document it is for; reload the page."},
    )
    submission_id = forms.UUIDField(required=False)
    seconds_spent = forms.FloatField(required=False, min_value=0)
    model_version_shown = forms.IntegerField(required=False, min_value=0)
    suggested_labels = KeyListField(required=False)


class FlagForm(forms.Form):
    comment = forms.CharField(
        max_length=4000,
        strip=True,
        error_messages={"required": "Say why this document needs legal review."},
    )


class FlagResolveForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[
            ("requeue", "Back to the review queue: reviewers may label it"),
            ("close", "Close: keep it out of labeling"),
        ],
        widget=forms.RadioSelect,
        error_messages={"required": "Choose a decision: back to the queue, or close."},
    )
    note = forms.CharField(
        max_length=4000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Note",
        help_text="What legal review decided and why; kept in the audit log.",
        error_messages={"required": "Write a note: what was decided and why."},
    )


class MyWorkSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, strip=True, label="Search")


def first_error(form: forms.Form) -> str:
    """One message a reviewer can act on, naming the field unless the message says it all."""
    for field, errors in form.errors.items():
        message = errors[0]
        if field in ("__all__", "comment", "ticket"):
            return message
        return f"{field.replace('_', ' ')}: {message}"
    return "The request was not understood."
