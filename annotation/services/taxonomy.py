"""Taxonomy changes that never lose a label: add, edit, rename, merge, split, deprecate, reorder, delete, import.

Every saved change bumps `Taxonomy.version` and stores a `TaxonomyVersion` snapshot (labels, operation, who,
when), writes its audit event and, once committed, asks the learning loop to retrain. `label_key_mapping`
reads those operations back to tell a model trained on an older version what its label keys mean today.
"""

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max
from django.db.models.deletion import ProtectedError

from annotation.exceptions import InputRejected, LabelInUse, LabelsChanged, TaxonomyInvalid
from annotation.models import (
    DESCRIPTION_MAX_CHARS,
    GUIDELINE_MAX_CHARS,
    Annotation,
    AnnotationLabel,
    AnnotationRevision,
    Document,
    Label,
    Project,
    Skip,
    Taxonomy,
    TaxonomyVersion,
)
from annotation.selectors import RESERVED_KEYS
from annotation.services.audit import audit_record
from annotation.untrusted import json_read, yaml_read
from webhooks.events import event_emit

logger = logging.getLogger(__name__)

# What each operation means, for the version history and the audit log ("taxonomy.<operation>").
OPERATIONS = {
    "baseline": "State before the first recorded change",
    "add": "Label added",
    "edit": "Label edited",
    "rename": "Label renamed",
    "merge": "Labels merged",
    "split": "Label split",
    "deprecate": "Label deprecated",
    "restore": "Label restored",
    "reorder": "Labels reordered",
    "delete": "Label deleted",
    "import": "Labels imported",
    "template": "Labels from a template",
    "mode": "Single- or multi-label mode changed",
}
EDITABLE_FIELDS = ("name", "description", "guideline", "color", "shortcut", "parent")
DEFAULT_COLOR = "#4f6d7a"
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
KEY_RE = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
# A taxonomy file's limits: the OPP-115 template with its guidelines is 12 KB and 10 labels.
TAXONOMY_MAX_BYTES = 1024 * 1024
TAXONOMY_MAX_LABELS = 2000
# What each field of a label in a file must be: YAML reads `key: 5` as a number and `name: [a, b]` as a list,
# and neither may end up stored as its text.
LABEL_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,),
    "name": (str,),
    "description": (str,),
    "guideline": (str,),
    "color": (str,),
    "shortcut": (str,),
    "parent": (str,),
    "deprecated": (bool,),
    "order": (int,),
}
LABEL_TEXT_LIMITS = {"name": 200, "description": DESCRIPTION_MAX_CHARS, "guideline": GUIDELINE_MAX_CHARS}
REREVIEW_REASON_MAX = 255


# --- Reads -----------------------------------------------------------------------------------------------------


def label_as_dict(label: Label, parent_key: str | None) -> dict[str, Any]:
    return {
        "key": label.key,
        "name": label.name,
        "description": label.description,
        "guideline": label.guideline,
        "color": label.color,
        "shortcut": label.shortcut,
        "order": label.order,
        "parent": parent_key,
        "deprecated": label.deprecated,
    }


def taxonomy_labels(taxonomy: Taxonomy) -> list[dict[str, Any]]:
    """Every label of the taxonomy as plain data, in tree order (each parent before its children)."""
    labels = list(Label.objects.filter(taxonomy=taxonomy).order_by("order", "id"))
    keys = {label.pk: label.key for label in labels}
    return [label_as_dict(label, keys.get(label.parent_id)) for label in tree_order(labels)]


def tree_order(labels: list[Label]) -> list[Label]:
    """Labels depth-first: roots in (order, id), each followed by its children in (order, id)."""
    by_parent: dict[int | None, list[Label]] = {}
    ids = {label.pk for label in labels}
    for label in sorted(labels, key=lambda lab: (lab.order, lab.pk)):
        parent = label.parent_id if label.parent_id in ids else None
        by_parent.setdefault(parent, []).append(label)
    result: list[Label] = []

    def walk(parent: int | None) -> None:
        for label in by_parent.get(parent, []):
            result.append(label)
            walk(label.pk)

    walk(None)
    return result


def label_depths(labels: list[Label]) -> dict[int, int]:
    parents = {label.pk: label.parent_id for label in labels}
    depths: dict[int, int] = {}
    for label in labels:
        depth, current = 0, label.parent_id
        while current is not None and depth < len(labels):
            depth, current = depth + 1, parents.get(current)
        depths[label.pk] = depth
    return depths


def taxonomy_document(project: Project) -> dict[str, Any]:
    """The taxonomy as a file: what `taxonomy_import` reads back (flat labels, parents by key)."""
    taxonomy = taxonomy_for(project)
    return {
        "name": project.name,
        "description": project.description,
        "multi_label": project.multi_label,
        "version": taxonomy.version,
        "labels": taxonomy_labels(taxonomy),
    }


def taxonomy_export(project: Project, fmt: str) -> str:
    document = taxonomy_document(project)
    if fmt == "json":
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    raise TaxonomyInvalid(f"Unknown taxonomy format {fmt!r}: use json or yaml.")


def taxonomy_parse(content: str | bytes, *, fmt: str) -> dict[str, Any]:
    """A taxonomy file (JSON or YAML) as {"labels": [...], ...}; TaxonomyInvalid says what is wrong with it.

    YAML aliases are refused (a few hundred bytes of them expand to megabytes), and so are files over
    TAXONOMY_MAX_BYTES, nesting deeper than annotation.untrusted allows and NUL characters.
    """
    if len(content) > TAXONOMY_MAX_BYTES:
        raise TaxonomyInvalid(
            f"The file is {len(content):,} bytes; a taxonomy file is at most {TAXONOMY_MAX_BYTES:,} bytes."
        )
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise TaxonomyInvalid("The file is not UTF-8 text.") from error
    try:
        if fmt == "json":
            data = json_read(content, what="The file")
        elif fmt in ("yaml", "yml"):
            data = yaml_read(content, what="The file")
        else:
            raise TaxonomyInvalid(f"Unknown taxonomy format {fmt!r}: use a .json, .yaml or .yml file.")
    except json.JSONDecodeError as error:
        raise TaxonomyInvalid(f"Not valid JSON: {error.msg} (line {error.lineno}, column {error.colno}).") from error
    except yaml.YAMLError as error:
        raise TaxonomyInvalid(_yaml_problem(error)) from error
    except InputRejected as error:
        raise TaxonomyInvalid(str(error)) from error
    if isinstance(data, list):
        data = {"labels": data}
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
        raise TaxonomyInvalid('The file must hold a list of labels, or an object with a "labels" list.')
    return data


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's complaint in one sentence with its line, without its internal dump of the text."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or "the text cannot be read"
    where = f" on line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return (
        f"Not valid YAML: {problem}{where}. Check the indentation there (spaces, not tabs) and that every "
        f'"key: value" has a space after its colon.'
    )


def taxonomy_for(project: Project) -> Taxonomy:
    taxonomy, _ = Taxonomy.objects.get_or_create(project=project)
    return taxonomy


@dataclass(frozen=True)
class OperationPreview:
    """What an operation would touch, shown before it is applied."""

    operation: str
    label_keys: list[str]
    annotations: int  # annotations carrying the labels
    documents: int  # documents those annotations belong to
    requeued: int = 0  # labeled documents that go back to the queue (split)
    combined: int = 0  # annotations holding several of the merged labels: they end with the target once
    refused: str = ""  # why it cannot be applied, when it cannot


def operation_preview(
    *, project: Project, operation: str, label_keys: Iterable[str], target_key: str = ""
) -> OperationPreview:
    """Counts of what the operation changes. For a merge, `label_keys` are the labels that go away and
    `target_key` the existing label they go into: the target's own annotations do not move, so they are not
    counted as moved, but one that also holds a source label ends with the target once and counts as combined.
    """
    keys = [key for key in dict.fromkeys(label_keys) if key != target_key]
    links = AnnotationLabel.objects.filter(label__taxonomy__project=project, label__key__in=keys)
    counts = links.aggregate(
        annotations=Count("annotation_id", distinct=True), documents=Count("annotation__document_id", distinct=True)
    )
    preview = {"operation": operation, "label_keys": keys, **counts}
    if operation == "split":
        preview["requeued"] = (
            Document.objects.filter(project=project, status=Document.Status.LABELED, annotations__labels__key__in=keys)
            .distinct()
            .count()
        )
    elif operation == "merge":
        merged = keys + ([target_key] if target_key else [])
        moved = links.values("annotation_id")
        preview["combined"] = (
            AnnotationLabel.objects.filter(
                label__taxonomy__project=project, label__key__in=merged, annotation_id__in=moved
            )
            .values("annotation_id")
            .annotate(n=Count("label_id"))
            .filter(n__gt=1)
            .order_by()
            .count()
        )
    elif operation == "delete" and counts["annotations"]:
        preview["refused"] = _in_use_message(keys[0], counts["annotations"], counts["documents"])
    return OperationPreview(**preview)


def label_usage(project: Project) -> dict[int, dict[str, int]]:
    """Annotations and documents per label id, in one query."""
    rows = (
        AnnotationLabel.objects.filter(label__taxonomy__project=project)
        .values("label_id")
        .annotate(annotations=Count("annotation_id"), documents=Count("annotation__document_id", distinct=True))
    )
    return {row["label_id"]: {"annotations": row["annotations"], "documents": row["documents"]} for row in rows}


# --- Mapping model labels through versions ------------------------------------------------------------------


def compose_key_mapping(
    keys: Iterable[str], operations: Iterable[tuple[str, dict[str, Any]]], current_keys: Iterable[str]
) -> dict[str, str | None]:
    """Where each old key leads after the operations, in order; None where no current label stands for it.

    Pure: renames keep keys (only the name changes), merges lead sources to the target, a split source and a
    deleted key lead nowhere (their meaning changed or went). A key that ends on a label that is not current
    (deprecated, deleted) maps to None.
    """
    mapping: dict[str, str | None] = {key: key for key in keys}

    def redirect(old: str, new: str | None) -> None:
        for key, value in mapping.items():
            if value == old:
                mapping[key] = new

    for operation, details in operations:
        if operation == "merge":
            target = details.get("target")
            for source in details.get("sources", []):
                if source != target:
                    redirect(source, target)
        elif operation == "split":
            redirect(details.get("source"), None)
        elif operation == "delete":
            redirect(details.get("key"), None)
    current = set(current_keys)
    return {key: (value if value in current else None) for key, value in mapping.items()}


def label_key_mapping(project: Project, from_version: int) -> dict[str, str | None]:
    """Old label key -> today's key (or None) for a model trained on taxonomy version `from_version`.

    The learning side uses it to show a stale model's suggestions under today's labels and to hide the ones
    that no longer mean anything. The keys are those of the snapshot of `from_version`; where that version
    has no snapshot (changes made before versions were recorded), every key the taxonomy has known.
    """
    taxonomy = taxonomy_for(project)
    versions = list(TaxonomyVersion.objects.filter(taxonomy=taxonomy).order_by("version"))
    current_keys = list(Label.objects.filter(taxonomy=taxonomy, deprecated=False).values_list("key", flat=True))
    snapshot = next((v for v in versions if v.version == from_version), None)
    if snapshot is not None:
        keys = [label["key"] for label in snapshot.labels]
    else:
        keys = list(dict.fromkeys([lab["key"] for v in versions for lab in v.labels] + current_keys))
        keys += list(Label.objects.filter(taxonomy=taxonomy, deprecated=True).values_list("key", flat=True))
        keys = list(dict.fromkeys(keys))
    operations = [(v.operation, v.details) for v in versions if v.version > from_version]
    return compose_key_mapping(keys, operations, current_keys)


@dataclass(frozen=True)
class CurrentLabels:
    """How the label keys of a model trained on `model_taxonomy_version` read in today's taxonomy.

    Predictions, suggestions and exports pass a model's probabilities through `probabilities` so that nobody
    downstream sees a label the taxonomy no longer has: merged-away labels count towards their target, a split
    or deleted label's probability is left out (its meaning changed) and listed in `unmapped`.
    """

    taxonomy_version: int
    model_taxonomy_version: int | None
    mapping: dict[str, str | None]

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(key for key in self.mapping.values() if key is not None))

    @property
    def unmapped(self) -> list[str]:
        return [key for key, now in self.mapping.items() if now is None]

    def probabilities(self, probabilities: dict[str, float], *, multi_label: bool) -> dict[str, float]:
        """Single-label probabilities of merged labels add up (they were exclusive outcomes of one softmax);
        multi-label ones are independent per label, and the merged label applies when any source did, so the
        highest one stands for it (each head's threshold is folded in at 0.5, so the decision is kept)."""
        mapped: dict[str, float] = {}
        for key, probability in probabilities.items():
            now = self.mapping.get(key)
            if now is None:
                continue
            if now in mapped:
                mapped[now] = max(mapped[now], probability) if multi_label else mapped[now] + probability
            else:
                mapped[now] = float(probability)
        return mapped


_KEYS_AT_VERSION: dict[tuple, tuple[str, ...]] = {}
KEYS_AT_VERSION_KEPT = 256


def label_keys_at(project: Project, version: int) -> tuple[str, ...]:
    """Today's label keys (deprecated ones left out) when the taxonomy is at `version`.

    Every saved change makes a new version, so the keys of one version never change: each process reads them
    once per version (predictions ask on every request). Read only while the taxonomy is still at `version`;
    otherwise today's keys are returned and not kept.
    """
    # With its creation time: a database restored or recreated under a running process reuses project ids.
    cache_key = (project.pk, project.created_at, version)
    known = _KEYS_AT_VERSION.get(cache_key)
    if known is not None:
        return known
    keys = tuple(
        Label.objects.filter(taxonomy__project=project, taxonomy__version=version, deprecated=False).values_list(
            "key", flat=True
        )
    )
    if not keys:  # the taxonomy moved on meanwhile (or has no labels): answer with today's, keep nothing
        return tuple(Label.objects.filter(taxonomy__project=project, deprecated=False).values_list("key", flat=True))
    if len(_KEYS_AT_VERSION) >= KEYS_AT_VERSION_KEPT:
        _KEYS_AT_VERSION.clear()
    _KEYS_AT_VERSION[cache_key] = keys
    return keys


def current_labels(
    project: Project,
    *,
    model_taxonomy_version: int | None,
    keys: Iterable[str],
    current_version: int | None = None,
    current_keys: Iterable[str] | None = None,
) -> CurrentLabels:
    """`keys` of a model trained on `model_taxonomy_version`, led through the changes made since.

    A caller that knows today's version and label keys passes them; when the model saw today's version, that
    costs no query (the labeling page asks this for every document it shows).
    """
    keys = list(keys)
    if current_version is None:
        current_version = taxonomy_for(project).version
    changed = model_taxonomy_version is not None and model_taxonomy_version != current_version
    if current_keys is None or changed:
        current_keys = Label.objects.filter(taxonomy__project=project, deprecated=False).values_list("key", flat=True)
    current = set(current_keys)
    through = label_key_mapping(project, model_taxonomy_version) if changed else {}
    mapping = {key: (through[key] if key in through else (key if key in current else None)) for key in keys}
    return CurrentLabels(
        taxonomy_version=current_version, model_taxonomy_version=model_taxonomy_version, mapping=mapping
    )


def model_status(project: Project) -> dict[str, Any] | None:
    """The active model against today's taxonomy: its number, the version it saw, and whether it is outdated.

    Asks `learning.selectors.active_model_version(project)` (an object with `taxonomy_version`), when the
    learning side provides it; None otherwise or before the first model.
    """
    try:
        from learning import selectors as learning_selectors
    except ImportError:
        return None
    active_model_version = getattr(learning_selectors, "active_model_version", None)
    if active_model_version is None:
        return None
    model = active_model_version(project)
    if model is None:
        return None
    taxonomy = taxonomy_for(project)
    trained_on = getattr(model, "taxonomy_version", None)
    outdated = trained_on is None or trained_on != taxonomy.version
    mapping = label_key_mapping(project, trained_on) if outdated and trained_on is not None else {}
    return {
        "number": getattr(model, "number", model.pk),
        "taxonomy_version": trained_on,
        "current_version": taxonomy.version,
        "outdated": outdated,
        "changed": {old: new for old, new in mapping.items() if old != new},
    }


# --- The retrain request ---------------------------------------------------------------------------------------


def request_retrain(project_id: int) -> None:
    """Ask the learning loop to retrain after a committed taxonomy change.

    `learning.tasks.labels_changed(project_id)` belongs to the learning side; while it does not exist
    (ImportError, AttributeError) there is nobody to ask and the project page shows the model as outdated.
    A broker outage is logged, not raised: the change is committed already.
    """
    try:
        from learning import tasks

        labels_changed = tasks.labels_changed
    except (ImportError, AttributeError):
        logger.info("learning.tasks.labels_changed is not available; no retrain requested for %s", project_id)
        return
    try:
        labels_changed.delay(project_id)
    except Exception:  # the broker is down: the taxonomy change stands, the next label knocks again
        logger.exception("Could not request a retrain of project %s after a taxonomy change", project_id)


# --- Writes -----------------------------------------------------------------------------------------------------


def _locked_taxonomy(project: Project) -> Taxonomy:
    """The project's taxonomy locked for this transaction, so two admins' changes get distinct versions.

    Changes made before versions were recorded (or by other writers) get a baseline snapshot first, so the
    history starts from what the taxonomy really was.
    """
    taxonomy_for(project)
    taxonomy = Taxonomy.objects.select_for_update().get(project=project)
    if not TaxonomyVersion.objects.filter(taxonomy=taxonomy, version=taxonomy.version).exists():
        TaxonomyVersion.objects.create(
            taxonomy=taxonomy,
            version=taxonomy.version,
            operation="baseline",
            labels=taxonomy_labels(taxonomy),
            multi_label=project.multi_label,
            created_by=None,
        )
    return taxonomy


def taxonomy_hold(project: Project) -> None:
    """Keep the project's taxonomy as it is until this transaction ends (a shared lock on its row).

    Writers of labels (an answer, an import) take this first and only then lock documents, in the order every
    taxonomy change locks too (the taxonomy row, then what it touches): an answer in flight either commits
    before a merge starts, and the merge maps it, or waits for the merge and then finds its labels gone.
    On SQLite the database's single writer lock already serialises them.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {Taxonomy._meta.db_table} WHERE project_id = %s FOR SHARE", [project.pk])


def _delete_labels_checked(label_ids: Iterable[int], *, what: str) -> None:
    """Delete labels, turning an answer that still holds one into LabelsChanged instead of a server error.

    Foreign keys are checked at commit on PostgreSQL; checking them here, in a savepoint, lets the caller say
    what happened while nothing is written yet.
    """
    try:
        with transaction.atomic():
            Label.objects.filter(pk__in=list(label_ids)).delete()
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    except (ProtectedError, IntegrityError) as error:
        raise LabelsChanged(
            f"An answer with {what} was stored while this change was being made; nothing was changed. "
            "Look at the preview again and repeat the change."
        ) from error


def _version_save(
    *,
    taxonomy: Taxonomy,
    project: Project,
    actor: AbstractBaseUser | None,
    operation: str,
    details: dict[str, Any],
    before: dict[str, Any] | None = None,
) -> TaxonomyVersion:
    previous = taxonomy.version
    taxonomy.version = previous + 1
    taxonomy.save(update_fields=["version", "updated_at"])
    version = TaxonomyVersion.objects.create(
        taxonomy=taxonomy,
        version=taxonomy.version,
        operation=operation,
        details=details,
        labels=taxonomy_labels(taxonomy),
        multi_label=project.multi_label,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    audit_record(
        action=f"taxonomy.{operation}",
        actor=actor,
        project=project,
        target=taxonomy,
        before={"version": previous, **(before or {})},
        after={"version": taxonomy.version, **details},
    )
    project_id = project.pk
    transaction.on_commit(lambda: request_retrain(project_id))
    event_emit(
        project_id=project_id,
        event="taxonomy.changed",
        data={"version": taxonomy.version, "operation": operation, "details": details},
    )
    return version


def _check_key(taxonomy: Taxonomy, key: str) -> str:
    key = (key or "").strip()
    if not KEY_RE.match(key):
        raise TaxonomyInvalid(f"“{key}” is not a usable key: use letters, digits, _ or -, at most 64 characters.")
    if Label.objects.filter(taxonomy=taxonomy, key=key).exists():
        raise TaxonomyInvalid(f"The taxonomy already has a label with key “{key}”: each key names one label.")
    return key


def _check_shortcut(taxonomy: Taxonomy, shortcut: str, *, exclude_pk: int | None = None) -> str:
    shortcut = (shortcut or "").strip()
    if not shortcut:
        return ""
    if len(shortcut) != 1:
        raise TaxonomyInvalid(f"A shortcut is one key; “{shortcut}” is {len(shortcut)}.")
    if shortcut.lower() in RESERVED_KEYS:
        reserved = ", ".join(sorted(RESERVED_KEYS))
        raise TaxonomyInvalid(f"“{shortcut}” is a key of the labeling page itself ({reserved}); choose another.")
    clash = (
        Label.objects.filter(taxonomy=taxonomy, shortcut__iexact=shortcut).exclude(pk=exclude_pk).only("name").first()
    )
    if clash is not None:
        raise TaxonomyInvalid(f"The shortcut “{shortcut}” already belongs to “{clash.name}”.")
    return shortcut


def _check_color(color: str) -> str:
    color = (color or DEFAULT_COLOR).strip()
    if not COLOR_RE.match(color):
        raise TaxonomyInvalid(f"“{color}” is not a colour like #1f6f8b.")
    return color.lower()


def _text(value: str | None) -> str:
    """Free text as stored: browsers send a textarea's line breaks as CRLF, so a form that only renames a label
    would otherwise look like a guideline change."""
    return (value or "").replace("\r\n", "\n").replace("\r", "\n").strip()


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise TaxonomyInvalid("A label needs a name.")
    if len(name) > 200:
        raise TaxonomyInvalid("A label's name is at most 200 characters.")
    return name


def _parent_for(taxonomy: Taxonomy, parent_key: str | None, *, label: Label | None = None) -> Label | None:
    """The parent label by key; refuses a parent that is the label itself or one of its descendants."""
    if not parent_key:
        return None
    parent = Label.objects.filter(taxonomy=taxonomy, key=parent_key).first()
    if parent is None:
        raise TaxonomyInvalid(f"There is no label “{parent_key}” to put this one under.")
    if label is not None and label.pk is not None:
        parents = dict(Label.objects.filter(taxonomy=taxonomy).values_list("pk", "parent_id"))
        current: int | None = parent.pk
        while current is not None:
            if current == label.pk:
                raise TaxonomyInvalid(f"“{label.name}” cannot go under “{parent.name}”: that is inside it.")
            current = parents.get(current)
    return parent


def _in_use_message(name: str, annotations: int, documents: int) -> str:
    return (
        f"“{name}” is used by {annotations} annotation{'s' if annotations != 1 else ''} on {documents} "
        f"document{'s' if documents != 1 else ''}, so it cannot be deleted. Deprecate it to hide it from "
        "reviewers while keeping it in history and exports, or merge it into another label to move its annotations."
    )


def _save(label: Label, **kwargs: Any) -> None:
    try:
        label.full_clean(exclude=["taxonomy", "parent"])
    except ValidationError as error:
        raise TaxonomyInvalid("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from error
    label.save(**kwargs)


def _next_order(taxonomy: Taxonomy) -> int:
    highest = Label.objects.filter(taxonomy=taxonomy).aggregate(m=Max("order"))["m"]
    return 0 if highest is None else highest + 1


@transaction.atomic
def label_add(
    *,
    project: Project,
    actor: AbstractBaseUser | None,
    key: str,
    name: str,
    description: str = "",
    guideline: str = "",
    color: str = DEFAULT_COLOR,
    shortcut: str = "",
    parent_key: str | None = None,
) -> Label:
    """A new label, under `parent_key` when given, after the others."""
    taxonomy = _locked_taxonomy(project)
    label = Label(
        taxonomy=taxonomy,
        key=_check_key(taxonomy, key),
        name=_check_name(name),
        description=_text(description),
        guideline=_text(guideline),
        color=_check_color(color),
        shortcut=_check_shortcut(taxonomy, shortcut),
        parent=_parent_for(taxonomy, parent_key),
        order=_next_order(taxonomy),
    )
    _save(label)
    _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation="add",
        details={"key": label.key, "name": label.name, "parent": parent_key or None},
    )
    return label


@transaction.atomic
def label_update(*, label: Label, actor: AbstractBaseUser | None, **changes: Any) -> Label:
    """Change a label's name, description, guideline, colour, shortcut or parent (`parent` is a key or None).

    The key never changes: imports, exports, the API and trained models know the label by it. A change of
    name is recorded as a rename; annotations keep their label either way.
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise TaxonomyInvalid(f"These cannot be changed here: {', '.join(sorted(unknown))}.")
    project = label.taxonomy.project
    taxonomy = _locked_taxonomy(project)
    label = Label.objects.select_related("parent").get(pk=label.pk)
    old = label_as_dict(label, label.parent.key if label.parent_id else None)
    if "name" in changes:
        label.name = _check_name(changes["name"])
    if "description" in changes:
        label.description = _text(changes["description"])
    if "guideline" in changes:
        label.guideline = _text(changes["guideline"])
    if "color" in changes:
        label.color = _check_color(changes["color"])
    if "shortcut" in changes:
        label.shortcut = _check_shortcut(taxonomy, changes["shortcut"], exclude_pk=label.pk)
    if "parent" in changes:
        label.parent = _parent_for(taxonomy, changes["parent"] or None, label=label)
    new = label_as_dict(label, label.parent.key if label.parent_id else None)
    changed = {name: [old[name], new[name]] for name in EDITABLE_FIELDS if old[name] != new[name]}
    if not changed:
        return label
    _save(label)
    operation = "rename" if "name" in changed else "edit"
    _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation=operation,
        details={"key": label.key, "changes": changed},
        before={"key": label.key, **{name: values[0] for name, values in changed.items()}},
    )
    return label


def label_rename(*, label: Label, actor: AbstractBaseUser | None, name: str) -> Label:
    """A new name for the label; its key and its annotations stay as they are."""
    return label_update(label=label, actor=actor, name=name)


@transaction.atomic
def label_deprecate(*, label: Label, actor: AbstractBaseUser | None) -> Label:
    """Hide the label from new labeling; its annotations stay, in history and in exports.

    Its shortcut is freed for other labels and given back by `label_restore` when still free.
    """
    project = label.taxonomy.project
    taxonomy = _locked_taxonomy(project)
    label = Label.objects.get(pk=label.pk)
    if label.deprecated:
        raise TaxonomyInvalid(f"“{label.name}” is deprecated already.")
    shortcut = label.shortcut
    label.deprecated = True
    label.shortcut = ""
    label.save(update_fields=["deprecated", "shortcut"])
    usage = operation_preview(project=project, operation="deprecate", label_keys=[label.key])
    _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation="deprecate",
        details={"key": label.key, "shortcut": shortcut, "annotations": usage.annotations},
    )
    return label


@transaction.atomic
def label_restore(*, label: Label, actor: AbstractBaseUser | None) -> Label:
    """Offer a deprecated label for labeling again, with its old shortcut when no other label took it."""
    project = label.taxonomy.project
    taxonomy = _locked_taxonomy(project)
    label = Label.objects.get(pk=label.pk)
    if not label.deprecated:
        raise TaxonomyInvalid(f"“{label.name}” is not deprecated.")
    last = (
        TaxonomyVersion.objects.filter(taxonomy=taxonomy, operation="deprecate", details__key=label.key)
        .order_by("-version")
        .first()
    )
    old_shortcut = (last.details.get("shortcut") or "") if last else ""
    if old_shortcut and not Label.objects.filter(taxonomy=taxonomy, shortcut__iexact=old_shortcut).exists():
        label.shortcut = old_shortcut
    label.deprecated = False
    label.save(update_fields=["deprecated", "shortcut"])
    _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation="restore",
        details={"key": label.key, "shortcut": label.shortcut},
    )
    return label


@transaction.atomic
def label_delete(*, label: Label, actor: AbstractBaseUser | None) -> None:
    """Delete a label nobody used. One with annotations is refused (LabelInUse): deprecate or merge it."""
    project = label.taxonomy.project
    taxonomy = _locked_taxonomy(project)
    label = Label.objects.get(pk=label.pk)
    usage = operation_preview(project=project, operation="delete", label_keys=[label.key])
    if usage.annotations:
        raise LabelInUse(_in_use_message(label.name, usage.annotations, usage.documents))
    children = list(Label.objects.filter(parent=label).values_list("name", flat=True))
    if children:
        raise TaxonomyInvalid(f"“{label.name}” has labels under it ({', '.join(children)}); move or delete them first.")
    before = label_as_dict(label, None)
    try:
        with transaction.atomic():
            label.delete()
    except ProtectedError as error:  # an annotation arrived since the count above
        raise LabelInUse(_in_use_message(label.name, 1, 1)) from error
    _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation="delete",
        details={"key": before["key"], "name": before["name"]},
        before={"label": before},
    )


def _revisions_for(annotation_ids: list[int], *, actor: AbstractBaseUser | None, reason: str) -> None:
    """One revision per annotation holding its labels as they are now."""
    keys: dict[int, list[tuple[str, int]]] = {}
    rows = (
        AnnotationLabel.objects.filter(annotation_id__in=annotation_ids)
        .order_by("label__order", "label_id")
        .values_list("annotation_id", "label__key", "label_id")
    )
    for annotation_id, key, label_id in rows:
        keys.setdefault(annotation_id, []).append((key, label_id))
    changed_by = actor if actor is not None and actor.is_authenticated else None
    AnnotationRevision.objects.bulk_create(
        [
            AnnotationRevision(
                annotation_id=annotation_id,
                label_keys=[k for k, _ in keys.get(annotation_id, [])],
                label_ids=[i for _, i in keys.get(annotation_id, [])],
                changed_by=changed_by,
                reason=reason,
            )
            for annotation_id in annotation_ids
        ],
        batch_size=1000,
    )


@transaction.atomic
def labels_merge(
    *,
    project: Project,
    actor: AbstractBaseUser | None,
    source_keys: Iterable[str],
    target_key: str,
    target_name: str = "",
    target_shortcut: str | None = None,
) -> Label:
    """Merge labels into one: an existing label (`target_key` names it) or a new one (key and name).

    Every annotation holding a source label holds the target instead, once even if it had several sources;
    each gets an AnnotationRevision ("taxonomy.merge") so its history shows the change. The source labels are
    deleted, their children move under the target. A new target takes the sources' place in the tree and,
    unless `target_shortcut` says otherwise, the first source's shortcut.
    """
    taxonomy = _locked_taxonomy(project)
    keys = list(dict.fromkeys(k.strip() for k in source_keys if k and k.strip()))
    labels = {label.key: label for label in Label.objects.filter(taxonomy=taxonomy, key__in=keys + [target_key])}
    missing = [k for k in keys if k not in labels]
    if missing:
        raise TaxonomyInvalid(f"No such label: {', '.join(missing)}.")
    target = labels.get(target_key)
    sources = sorted((labels[k] for k in keys if k != target_key), key=lambda lab: (lab.order, lab.pk))
    if len(sources) + (1 if target is not None else 0) < 2:
        raise TaxonomyInvalid("Choose at least two labels to merge.")
    source_ids = {label.pk for label in sources}
    parents = dict(Label.objects.filter(taxonomy=taxonomy).values_list("pk", "parent_id"))

    created = target is None
    if created:
        common = {label.parent_id for label in sources}
        parent_id = common.pop() if len(common) == 1 else None
        while parent_id in source_ids:
            parent_id = parents.get(parent_id)
        target = Label(
            taxonomy=taxonomy,
            key=_check_key(taxonomy, target_key),
            name=_check_name(target_name),
            description="\n\n".join(s.description for s in sources if s.description),
            guideline="\n\n".join(f"**{s.name}**: {s.guideline}" for s in sources if s.guideline),
            color=sources[0].color,
            order=min(s.order for s in sources),
            parent_id=parent_id,
        )
        _save(target)
    else:
        if target.deprecated:
            raise TaxonomyInvalid(f"“{target.name}” is deprecated; restore it before merging into it.")
        current = target.parent_id
        while current is not None:
            if current in source_ids:
                raise TaxonomyInvalid(f"“{target.name}” lies under one of the merged labels; merge into that one.")
            current = parents.get(current)

    usage = operation_preview(
        project=project,
        operation="merge",
        label_keys=[s.key for s in sources],
        target_key="" if created else target.key,
    )
    affected = list(
        AnnotationLabel.objects.filter(label_id__in=source_ids).values_list("annotation_id", flat=True).distinct()
    )
    # Annotations written before revisions existed get one for the state they had, so history starts there.
    unrevised = list(Annotation.objects.filter(pk__in=affected, revisions__isnull=True).values_list("pk", flat=True))
    _revisions_for(unrevised, actor=None, reason="snapshot")
    AnnotationLabel.objects.filter(label_id__in=source_ids).delete()
    AnnotationLabel.objects.bulk_create(
        [AnnotationLabel(annotation_id=a, label=target) for a in affected], ignore_conflicts=True, batch_size=1000
    )
    _revisions_for(affected, actor=actor, reason="taxonomy.merge")

    Label.objects.filter(parent_id__in=source_ids).exclude(pk__in=source_ids | {target.pk}).update(parent=target)
    Label.objects.filter(pk__in=source_ids).update(parent=None)
    inherited = next((s.shortcut for s in sources if s.shortcut), "")
    removed = [label_as_dict(s, None) for s in sources]
    _delete_labels_checked(source_ids, what=" or ".join(f"“{s.name}”" for s in sources))
    if target_shortcut is not None:
        target.shortcut = _check_shortcut(taxonomy, target_shortcut, exclude_pk=target.pk)
    elif not target.shortcut and inherited:
        target.shortcut = _check_shortcut(taxonomy, inherited, exclude_pk=target.pk)
    target.save(update_fields=["shortcut"])
    _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation="merge",
        details={
            "sources": [s.key for s in sources],
            "target": target.key,
            "target_created": created,
            "annotations": usage.annotations,
            "documents": usage.documents,
        },
        before={"labels": removed},
    )
    return target


@dataclass(frozen=True)
class SplitPart:
    key: str
    name: str
    shortcut: str = ""
    description: str = ""
    guideline: str = ""
    color: str = ""


@transaction.atomic
def label_split(*, label: Label, actor: AbstractBaseUser | None, parts: Iterable[SplitPart]) -> tuple[list[Label], int]:
    """Split a label into two or more new ones; returns them and how many documents went back to the queue.

    The old label is deprecated, its annotations stay as they were (history and exports keep them), and
    their documents return to the queue with `rereview_reason` set, so a reviewer chooses among the new
    labels. A document held for legal review stays held, with the reason noted.
    """
    project = label.taxonomy.project
    taxonomy = _locked_taxonomy(project)
    label = Label.objects.get(pk=label.pk)
    parts = list(parts)
    if label.deprecated:
        raise TaxonomyInvalid(f"“{label.name}” is deprecated; restore it before splitting it.")
    if len(parts) < 2:
        raise TaxonomyInvalid("A split needs at least two new labels.")
    if len({p.key for p in parts}) != len(parts):
        raise TaxonomyInvalid("The new labels need different keys.")
    shortcut = label.shortcut
    label.deprecated = True
    label.shortcut = ""
    label.save(update_fields=["deprecated", "shortcut"])
    Label.objects.filter(taxonomy=taxonomy, order__gt=label.order).update(order=F("order") + len(parts))
    new_labels = []
    for i, part in enumerate(parts):
        wanted_shortcut = part.shortcut if part.shortcut or i > 0 else shortcut
        new = Label(
            taxonomy=taxonomy,
            key=_check_key(taxonomy, part.key),
            name=_check_name(part.name),
            description=_text(part.description),
            guideline=_text(part.guideline),
            color=_check_color(part.color or label.color),
            shortcut=_check_shortcut(taxonomy, wanted_shortcut),
            parent_id=label.parent_id,
            order=label.order + i + 1,
        )
        _save(new)
        new_labels.append(new)

    usage = operation_preview(project=project, operation="split", label_keys=[label.key])
    names = ", ".join(f"“{n.name}”" for n in new_labels)
    reason = f"Taxonomy v{taxonomy.version + 1}: “{label.name}” was split into {names}; choose again."
    reason = reason[: REREVIEW_REASON_MAX - 1] + "…" if len(reason) > REREVIEW_REASON_MAX else reason
    documents = Document.objects.filter(project=project, annotations__labels=label).distinct()
    document_ids = list(documents.values_list("pk", flat=True))
    requeued = Document.objects.filter(pk__in=document_ids, status=Document.Status.LABELED).update(
        status=Document.Status.QUEUED, rereview_reason=reason
    )
    Document.objects.filter(pk__in=document_ids).exclude(rereview_reason=reason).update(rereview_reason=reason)
    # The question changed, so an earlier "skip" no longer says anything about it.
    Skip.objects.filter(document_id__in=document_ids).delete()
    _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation="split",
        details={
            "source": label.key,
            "parts": [n.key for n in new_labels],
            "annotations": usage.annotations,
            "documents": len(document_ids),
            "requeued": requeued,
        },
    )
    return new_labels, requeued


@transaction.atomic
def labels_reorder(*, project: Project, actor: AbstractBaseUser | None, keys: list[str]) -> None:
    """Put the labels in the order of `keys` (every label's key, once). Parents stay as they are."""
    taxonomy = _locked_taxonomy(project)
    labels = {label.key: label for label in Label.objects.filter(taxonomy=taxonomy)}
    if sorted(keys) != sorted(labels):
        raise TaxonomyInvalid("A new order must list every label of the taxonomy exactly once.")
    before = [label.key for label in tree_order(list(labels.values()))]
    for order, key in enumerate(keys):
        labels[key].order = order
    Label.objects.bulk_update(list(labels.values()), ["order"])
    after = [label.key for label in tree_order(list(labels.values()))]
    if after == before and [labels[k].order for k in before] == list(range(len(before))):
        return
    _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation="reorder",
        details={"order": after},
        before={"order": before},
    )


def label_move(*, label: Label, actor: AbstractBaseUser | None, offset: int) -> None:
    """Move a label (with the labels under it) up (-1) or down (+1) among its siblings."""
    labels = tree_order(list(Label.objects.filter(taxonomy=label.taxonomy)))
    siblings = [lab for lab in labels if lab.parent_id == label.parent_id]
    position = next(i for i, lab in enumerate(siblings) if lab.pk == label.pk)
    other = position + offset
    if not 0 <= other < len(siblings):
        return
    siblings[position], siblings[other] = siblings[other], siblings[position]
    rank = {lab.pk: i for i, lab in enumerate(siblings)}
    # Re-rank the siblings, then lay the whole tree out again so `order` follows what people see.
    for lab in labels:
        if lab.pk in rank:
            lab.order = rank[lab.pk]
    ordered = tree_order(labels)
    labels_reorder(project=label.taxonomy.project, actor=actor, keys=[lab.key for lab in ordered])


def _annotations_with_several_labels(project: Project) -> int:
    return (
        AnnotationLabel.objects.filter(annotation__document__project=project)
        .values("annotation_id")
        .annotate(n=Count("label_id"))
        .filter(n__gt=1)
        .order_by()
        .count()
    )


@transaction.atomic
def taxonomy_set_mode(*, project: Project, actor: AbstractBaseUser | None, multi_label: bool) -> Project:
    """Single- or multi-label. Going back to single label is refused while annotations hold several labels."""
    taxonomy = _locked_taxonomy(project)
    project = Project.objects.select_for_update().get(pk=project.pk)
    if project.multi_label == multi_label:
        return project
    if not multi_label:
        several = _annotations_with_several_labels(project)
        if several:
            raise TaxonomyInvalid(
                f"{several} annotation{'s' if several != 1 else ''} hold several labels; "
                "a single-label project cannot keep them. Merge those labels first."
            )
    project.multi_label = multi_label
    project.save(update_fields=["multi_label"])
    _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation="mode",
        details={"multi_label": multi_label},
        before={"multi_label": not multi_label},
    )
    return project


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)  # labels of the taxonomy the file does not mention
    version: int | None = None


def _field_problems(spec: dict[str, Any]) -> list[str]:
    """Each known field of a label spec has its type (or is null) and its text fits."""
    problems = []
    for name, types in LABEL_FIELD_TYPES.items():
        value = spec.get(name)
        if value is None:
            continue
        if not isinstance(value, types) or (int in types and isinstance(value, bool)):
            kind = {bool: "true or false", int: "a whole number", str: "text"}[types[0]]
            hint = " (put it in quotes)" if types[0] is str and not isinstance(value, dict | list) else ""
            problems.append(f"{name} must be {kind}{hint}, not {value!r:.60}.")
        elif name in LABEL_TEXT_LIMITS and len(value) > LABEL_TEXT_LIMITS[name]:
            problems.append(f"{name} is {len(value):,} characters; at most {LABEL_TEXT_LIMITS[name]:,}.")
    return problems


def _flatten(specs: list[Any], parent: str | None, out: list[dict[str, Any]]) -> None:
    """Labels may nest under "children"; they become flat specs with a parent key."""
    for spec in specs:
        if not isinstance(spec, dict):
            raise TaxonomyInvalid(f"Each label must be an object with a key and a name, not {spec!r}.")
        spec = dict(spec)
        children = spec.pop("children", None) or []
        if parent is not None and not spec.get("parent"):
            spec["parent"] = parent
        out.append(spec)
        if not isinstance(children, list):
            raise TaxonomyInvalid(f"The children of “{spec.get('key')}” must be a list.")
        _flatten(children, str(spec.get("key", "")), out)


def _mode_from(data: dict[str, Any]) -> bool | None:
    if "multi_label" in data:
        return bool(data["multi_label"])
    mode = data.get("mode")
    if mode in ("multi", "multi-label", "multi_label"):
        return True
    if mode in ("single", "single-label", "single_label"):
        return False
    if mode is not None:
        raise TaxonomyInvalid(f"Mode must be single or multi, not {mode!r}.")
    return None


@transaction.atomic
def taxonomy_import(
    *, project: Project, actor: AbstractBaseUser | None, data: dict[str, Any], operation: str = "import"
) -> ImportResult:
    """Add the file's labels and update those whose key exists already; labels it does not name stay.

    The whole file is checked before anything is written: keys, names, colours, shortcuts (unique, none of
    the labeling page's keys), parents (in the file or the taxonomy, no cycles). One version records it all.
    """
    taxonomy = _locked_taxonomy(project)
    specs: list[dict[str, Any]] = []
    _flatten(list(data.get("labels") or []), None, specs)
    if len(specs) > TAXONOMY_MAX_LABELS:
        raise TaxonomyInvalid(
            f"The taxonomy was not imported: it has {len(specs):,} labels; at most {TAXONOMY_MAX_LABELS:,} are allowed."
        )
    if "multi_label" in data and not isinstance(data["multi_label"], bool):
        raise TaxonomyInvalid("The taxonomy was not imported: multi_label must be true or false.")
    existing = {label.key: label for label in Label.objects.filter(taxonomy=taxonomy).select_related("parent")}
    problems: list[str] = []
    seen: set[str] = set()
    for n, spec in enumerate(specs, start=1):
        problems.extend(f"Label {n}: {problem}" for problem in _field_problems(spec))
        key = str(spec.get("key", "")).strip()
        spec["key"] = key
        where = f"Label {n} ({key or 'no key'})"
        if not KEY_RE.match(key):
            problems.append(f"{where}: the key must be letters, digits, _ or -, at most 64 characters.")
        elif key in seen:
            problems.append(f"{where}: the key appears twice in the file.")
        seen.add(key)
        if not str(spec.get("name") or (existing[key].name if key in existing else "")).strip():
            problems.append(f"{where}: a label needs a name.")
        if spec.get("color") and not COLOR_RE.match(str(spec["color"])):
            problems.append(f"{where}: “{spec['color']}” is not a colour like #1f6f8b.")
        shortcut = str(spec.get("shortcut") or "").strip()
        if shortcut and (len(shortcut) != 1 or shortcut.lower() in RESERVED_KEYS):
            problems.append(f"{where}: “{shortcut}” cannot be a shortcut (one key, not s, u, f or ?).")

    # Shortcuts as they will be: the file's where it gives one, the label's own otherwise.
    shortcuts = {key: label.shortcut for key, label in existing.items()}
    parents = {key: (label.parent.key if label.parent_id else None) for key, label in existing.items()}
    for spec in specs:
        if "shortcut" in spec:
            shortcuts[spec["key"]] = str(spec["shortcut"] or "").strip()
        if "parent" in spec:
            parents[spec["key"]] = str(spec["parent"]).strip() if spec["parent"] else None
        else:
            parents.setdefault(spec["key"], None)
    owners: dict[str, str] = {}
    for key, shortcut in shortcuts.items():
        if shortcut and shortcut.lower() in owners:
            problems.append(f"The shortcut “{shortcut}” would belong to both “{owners[shortcut.lower()]}” and “{key}”.")
        elif shortcut:
            owners[shortcut.lower()] = key
    for key, parent in parents.items():
        if parent is not None and parent not in parents:
            problems.append(f"“{key}” is placed under “{parent}”, which is neither in the file nor the taxonomy.")
    for key in parents:
        chain, current = set(), parents.get(key)
        while current is not None and current != key and current not in chain:
            chain.add(current)
            current = parents.get(current)
        if current == key:
            problems.append(f"“{key}” ends up under itself: the parents form a loop.")
    mode = _mode_from(data)
    if mode is False and mode != project.multi_label and _annotations_with_several_labels(project):
        problems.append("The file asks for single-label mode, but annotations hold several labels.")
    if problems:
        raise TaxonomyInvalid("The taxonomy was not imported. " + " ".join(problems[:20]))

    result = ImportResult()
    before = {key: label_as_dict(label, _parent_key(label)) for key, label in existing.items()}
    next_order = _next_order(taxonomy)
    # Free the shortcuts the file sets before setting them, so no two labels hold one at any moment.
    Label.objects.filter(taxonomy=taxonomy, key__in=[s["key"] for s in specs if "shortcut" in s]).update(shortcut="")
    labels: dict[str, Label] = dict(existing)
    for position, spec in enumerate(specs):
        key = spec["key"]
        label = existing.get(key)
        if label is None:
            label = Label(taxonomy=taxonomy, key=key, order=next_order + position, color=DEFAULT_COLOR, parent=None)
            result.added.append(key)
        for name in ("name", "description", "guideline", "color", "shortcut", "deprecated", "order"):
            if spec.get(name) is not None:
                value = spec[name]
                setattr(label, name, value.strip() if isinstance(value, str) else value)
        label.color = label.color.lower()
        _save(label)
        labels[key] = label
    for key, label in labels.items():
        label.parent = labels[parents[key]] if parents.get(key) else None
    Label.objects.bulk_update(list(labels.values()), ["parent"])
    result.updated = [
        key for key in existing if key in seen and label_as_dict(labels[key], parents[key]) != before[key]
    ]
    result.untouched = [key for key in existing if key not in seen]

    before_mode = project.multi_label
    if mode is not None and mode != project.multi_label:
        project.multi_label = mode
        project.save(update_fields=["multi_label"])
    if not result.added and not result.updated and before_mode == project.multi_label:
        return result
    version = _version_save(
        taxonomy=taxonomy,
        project=project,
        actor=actor,
        operation=operation,
        details={
            "added": result.added,
            "updated": result.updated,
            "multi_label": project.multi_label,
            "source": str(data.get("name") or ""),
        },
        before={"multi_label": before_mode},
    )
    result.version = version.version
    return result


def _parent_key(label: Label) -> str | None:
    return label.parent.key if label.parent_id else None


def taxonomy_from_template(*, project: Project, actor: AbstractBaseUser | None, template: str) -> ImportResult:
    """Add a template's labels (e.g. "opp115": the OPP-115 top-level categories) to the taxonomy."""
    from annotation.services.projects import TAXONOMY_TEMPLATES, taxonomy_template

    if template not in TAXONOMY_TEMPLATES:
        raise TaxonomyInvalid(f"There is no template {template!r}.")
    data = taxonomy_template(template)
    # A template brings labels, not the project's mode.
    data = {k: v for k, v in data.items() if k not in ("multi_label", "mode")}
    return taxonomy_import(project=project, actor=actor, data=data, operation="template")


def taxonomy_versions(project: Project) -> list[TaxonomyVersion]:
    return list(
        TaxonomyVersion.objects.filter(taxonomy__project=project).select_related("created_by").order_by("-version")
    )
