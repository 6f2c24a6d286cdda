"""Forms of the project admin pages: labels, merges and splits, taxonomy files, people, the audit filter."""

from django import forms

from annotation.models import ImportBatch, Label, Membership, Project
from annotation.services.projects import PROJECT_SETTINGS, TAXONOMY_TEMPLATES
from annotation.services.taxonomy import DEFAULT_COLOR, label_depths, tree_order

TEMPLATE_NAMES = {"opp115": "OPP-115 top-level data practices (10 labels with guidelines)"}
TEMPLATE_CHOICES = [(key, TEMPLATE_NAMES.get(key, key)) for key in TAXONOMY_TEMPLATES]


def label_choices(labels: list[Label], *, blank: str | None = None) -> list[tuple[str, str]]:
    """Labels as (key, indented name) in tree order, for selects and checkbox lists."""
    ordered = tree_order(labels)
    depths = label_depths(ordered)
    choices = [("", blank)] if blank is not None else []
    for label in ordered:
        suffix = " (deprecated)" if label.deprecated else ""
        choices.append((label.key, f"{'— ' * depths[label.pk]}{label.name}{suffix}"))
    return choices


class LabelForm(forms.Form):
    key = forms.SlugField(
        max_length=64, help_text="Stable identifier for imports, exports, the API and models. It never changes."
    )
    name = forms.CharField(max_length=200)
    parent = forms.ChoiceField(required=False, help_text="Put the label under another one to build a hierarchy.")
    shortcut = forms.CharField(
        max_length=1, required=False, help_text="One key reviewers press to choose it; unique in the taxonomy."
    )
    color = forms.CharField(initial=DEFAULT_COLOR, widget=forms.TextInput(attrs={"type": "color"}))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    guideline = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Markdown shown to reviewers beside the label: when to use it, with examples.",
    )

    def __init__(self, *args, labels: list[Label], editing: Label | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        candidates = [label for label in labels if editing is None or label.pk != editing.pk]
        self.fields["parent"].choices = label_choices(candidates, blank="(top level)")
        if editing is not None:
            del self.fields["key"]


class MergeForm(forms.Form):
    sources = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, help_text="The labels to merge.")
    into = forms.ChoiceField(
        choices=[("new", "A new label"), ("existing", "One of the labels")],
        initial="new",
        widget=forms.RadioSelect,
    )
    target = forms.ChoiceField(required=False, help_text="When merging into an existing label: which one.")
    new_key = forms.SlugField(max_length=64, required=False, label="New key")
    new_name = forms.CharField(max_length=200, required=False, label="New name")

    def __init__(self, *args, labels: list[Label], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sources"].choices = label_choices(labels)
        self.fields["target"].choices = label_choices([lab for lab in labels if not lab.deprecated], blank="—")

    def clean(self):
        data = super().clean()
        if data.get("into") == "existing" and not data.get("target"):
            self.add_error("target", "Choose the label to merge into.")
        if data.get("into") == "new":
            for name in ("new_key", "new_name"):
                if not data.get(name):
                    self.add_error(name, "A new label needs a key and a name.")
        return data

    def target_key(self) -> str:
        data = self.cleaned_data
        return data["target"] if data["into"] == "existing" else data["new_key"]


class SplitPartForm(forms.Form):
    key = forms.SlugField(max_length=64)
    name = forms.CharField(max_length=200)
    shortcut = forms.CharField(max_length=1, required=False)
    description = forms.CharField(required=False)


SplitPartFormSet = forms.formset_factory(SplitPartForm, extra=0, min_num=2, validate_min=True, max_num=10)


class TaxonomyImportForm(forms.Form):
    template = forms.ChoiceField(
        choices=[("", "—")] + TEMPLATE_CHOICES, required=False, help_text="Add a template's labels."
    )
    file = forms.FileField(required=False, help_text="A .json, .yaml or .yml taxonomy, e.g. one exported here.")
    text = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 8}), help_text="Or paste JSON or YAML here."
    )
    format = forms.ChoiceField(choices=[("yaml", "YAML"), ("json", "JSON")], initial="yaml", required=False)

    def clean(self):
        data = super().clean()
        if sum(bool(data.get(name)) for name in ("template", "file", "text")) != 1:
            raise forms.ValidationError("Choose a template, upload a file or paste a taxonomy (one of them).")
        return data


class MemberAddForm(forms.Form):
    identifier = forms.CharField(
        max_length=254,
        label="Username or email",
        help_text="Someone Docket does not know yet gets an account and a link to set a password.",
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.REVIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False)
    actor = forms.ChoiceField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")

    def __init__(self, *args, actions: list[str], actors: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        # A family of actions ("taxonomy") filters all of them; listed only where it holds more than one, and
        # named by what it holds ("All taxonomy actions: add, merge, split") rather than as a pattern.
        families: dict[str, list[str]] = {}
        for action in actions:
            family, _, verb = action.partition(".")
            families.setdefault(family, []).append(verb or family)
        family_choices = [
            (f"{f}.", f"All {f} actions: {', '.join(verbs)}") for f, verbs in sorted(families.items()) if len(verbs) > 1
        ]
        self.fields["action"].choices = [("", "All actions")] + family_choices + [(a, a) for a in actions]
        self.fields["actor"].choices = [("", "Anyone")] + [(a, a) for a in actors]


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    multi_label = forms.TypedChoiceField(
        choices=[("0", "Single label: one label per document"), ("1", "Multi-label: one or more labels")],
        coerce=lambda v: v == "1",
        initial="0",
        widget=forms.RadioSelect,
        label="Mode",
    )
    start = forms.ChoiceField(
        choices=[("empty", "An empty taxonomy")] + TEMPLATE_CHOICES + [("file", "A taxonomy file (JSON or YAML)")],
        initial="opp115",
        widget=forms.RadioSelect,
        label="Start from",
    )
    file = forms.FileField(required=False)

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if Project.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError("A project with this name exists already.")
        return name

    def clean(self):
        data = super().clean()
        if data.get("start") == "file" and not data.get("file"):
            self.add_error("file", "Choose the taxonomy file.")
        return data


class ProjectSettingsForm(forms.ModelForm):
    """The settings a project admin changes after creation; the service validates and audits the change."""

    class Meta:
        model = Project
        fields = PROJECT_SETTINGS
        labels = {
            "lease_ttl_seconds": "Lease time (seconds)",
            "query_strategy": "Which document comes next",
            "fast_retrain_every": "Refit the model head every … new labels",
            "slow_retrain_every": "Fine-tune the model body every … new labels",
            "eval_fraction": "Share of documents reserved for evaluation",
            "promotion_policy": "When a new model serves",
            "reviewers_bulk_label": "Reviewers may label many documents at once in Explore",
        }
        help_texts = {
            "query_strategy": "Diverse uncertainty, with or without favouring the least-labelled labels, beat "
            "random picking on unseen OPP-115 policies (docs/benchmarks.md); a change lays the queue out again "
            "at once.",
            "eval_fraction": "0 to 0.5. Reserved documents are drawn at random, labeled like any other, never "
            "trained on; they are what model versions are compared on.",
        }
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}


class ImportUploadForm(forms.Form):
    """A document file to import; the column names default to what an export writes."""

    file = forms.FileField(help_text="CSV with a header row, JSON Lines, or plain text with one document per line.")
    format = forms.ChoiceField(
        choices=[("", "Told from the file's content and name")] + list(ImportBatch.Format.choices), required=False
    )
    text_field = forms.CharField(
        initial="text", max_length=200, help_text="Column or key holding the text (CSV, JSONL)."
    )
    id_field = forms.CharField(
        initial="id", max_length=200, help_text="Column or key holding your own id (optional in the file)."
    )
    label_field = forms.CharField(
        initial="labels",
        max_length=200,
        required=False,
        help_text="Column or key with label keys; they become annotations. Leave empty to import text only.",
    )
