"""Forms of the Explore page: the search and its filters, the bulk labeling steps, "review these next"."""

from django import forms
from django.contrib.auth import get_user_model

from annotation.models import ImportBatch, Label, Membership, Project
from explore.search import ExploreQuery

YES_NO = [("", "Any"), ("yes", "Yes"), ("no", "No")]


def _yes_no(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


class ExploreForm(forms.Form):
    """The search, read from the query string; filters that read others' answers only for roles that see them."""

    words = forms.CharField(
        required=False,
        max_length=500,
        label="Words",
        help_text='All words must occur; "quoted phrase", prefix* (delet* finds delete, deleting, deletion).',
    )
    meaning = forms.CharField(
        required=False, max_length=1000, label="Meaning", help_text="Free text: documents that say something like it."
    )
    like = forms.IntegerField(required=False, min_value=1, label="More like document", widget=forms.HiddenInput)
    meta_key = forms.CharField(required=False, max_length=200, label="Metadata field")
    meta_value = forms.CharField(required=False, max_length=500, label="equals")
    batch = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Import")
    labeled = forms.ChoiceField(required=False, choices=YES_NO, label="Labeled")
    final = forms.ChoiceField(required=False, label="Final label")
    predicted = forms.ChoiceField(
        required=False,
        label="Model predicts",
        help_text="With no label, the probability range is the model's confidence in its likeliest label.",
    )
    pmin = forms.FloatField(required=False, min_value=0, max_value=1, label="with probability from")
    pmax = forms.FloatField(required=False, min_value=0, max_value=1, label="to")
    reviewer = forms.ChoiceField(required=False, label="Answered by")
    flagged = forms.ChoiceField(required=False, choices=YES_NO, label="Held for legal review")
    gold = forms.ChoiceField(required=False, choices=YES_NO, label="Gold")

    def __init__(self, *args, project: Project, sees_answers: bool, **kwargs):
        super().__init__(*args, **kwargs)
        labels = [("", "Any label")] + [
            (label.key, label.name) for label in Label.objects.filter(taxonomy__project=project).order_by("order", "id")
        ]
        self.fields["final"].choices = labels
        self.fields["predicted"].choices = labels
        self.fields["batch"].choices = [("", "Any")] + [
            (b.pk, f"{b.file_name} ({b.created_at:%Y-%m-%d})")
            for b in ImportBatch.objects.filter(project=project).order_by("-created_at")[:100]
        ]
        self.fields["reviewer"].choices = [("", "Anyone")] + [
            (username, username)
            for username in Membership.objects.filter(project=project)
            .order_by("user__username")
            .values_list("user__username", flat=True)
        ]
        if not sees_answers:
            for name in ("final", "reviewer", "gold"):
                del self.fields[name]

    def clean(self):
        data = super().clean()
        if data.get("pmin") is not None and data.get("pmax") is not None and data["pmin"] > data["pmax"]:
            self.add_error("pmax", "The upper end must not be below the lower one.")
        return data

    def query(self) -> ExploreQuery:
        data = self.cleaned_data
        query = ExploreQuery(
            words=data.get("words", ""),
            meaning=data.get("meaning", ""),
            like_document=data.get("like"),
            metadata_key=data.get("meta_key", "").strip(),
            metadata_value=data.get("meta_value", ""),
            import_batch=data.get("batch"),
            labeled=_yes_no(data.get("labeled", "")),
            predicted_label=data.get("predicted", ""),
            probability_min=data.get("pmin"),
            probability_max=data.get("pmax"),
            flagged=_yes_no(data.get("flagged", "")),
        )
        if "final" in self.fields:
            query.final_label = data.get("final", "")
            query.reviewer = data.get("reviewer", "")
            query.gold = _yes_no(data.get("gold", ""))
        return query


class SelectionForm(forms.Form):
    """Which documents: ticked ones, or every one matching the search (`query` is its query string)."""

    # Ids the preview showed, carried to the apply step: what was previewed is what is applied.
    documents = forms.CharField(required=False, max_length=200_000, widget=forms.HiddenInput)
    all_matching = forms.BooleanField(required=False)
    query = forms.CharField(required=False, max_length=4000, widget=forms.HiddenInput)

    def clean_documents(self) -> list[int]:
        raw = self.cleaned_data.get("documents", "")
        return [int(v) for v in raw.split(",") if v.strip().isdigit()]

    def ticked(self) -> list[int]:
        """The rows ticked on the results page (`selected` checkboxes)."""
        return [int(v) for v in self.data.getlist("selected") if str(v).isdigit()]


class BulkLabelForm(SelectionForm):
    labels = forms.MultipleChoiceField(required=False, choices=())

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["labels"].choices = [
            (label.key, label.name)
            for label in Label.objects.filter(taxonomy__project=project, deprecated=False).order_by("order", "id")
        ]

    def clean_labels(self) -> list[str]:
        labels = self.cleaned_data.get("labels") or []
        if not labels:
            raise forms.ValidationError("Choose the labels to give.")
        return labels


class QueueBoostForm(SelectionForm):
    reviewer = forms.ChoiceField(required=False)

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reviewer"].choices = [("", "Everyone")] + [
            (str(pk), username)
            for pk, username in Membership.objects.filter(project=project)
            .order_by("user__username")
            .values_list("user_id", "user__username")
        ]

    def reviewer_user(self):
        value = self.cleaned_data.get("reviewer")
        return get_user_model().objects.get(pk=int(value)) if value else None
