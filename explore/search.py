"""Explore's reads: which documents match the words, the meaning and the filters, a page at a time, with the
model's suggestion and the matched words highlighted. Shared by the Explore page and the API."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchVector, SearchVectorField
from django.db import connection
from django.db.models import Exists, Func, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from annotation.models import (
    Adjudication,
    Annotation,
    AnnotationLabel,
    Document,
    DocumentSearchPending,
    DocumentSearchVector,
    GoldAnswer,
    Label,
    Lease,
    Project,
)
from annotation.selectors import annotation_label_keys, final_labels_for, latest_adjudications, own_label_keys_for
from learning import selectors as learning_selectors
from learning.services import neighbours

PAGE_SIZE = 25
MAX_PAGE_SIZE = 200
# Counting every match of a common word among a million documents costs more than the page itself; past this
# many the count says "more than" (at 1,000,000 documents counting to 10,000 took 50-90 ms, to 1,000 a tenth).
COUNT_LIMIT = 1_000
# A search by meaning ranks this many nearest documents, then filters and pages through them.
MEANING_CANDIDATES = 2_000
TEXT_SEARCH_CONFIG = "english"
# Markers ts_headline puts around matched words: private-use characters, so the text is escaped first and only
# the markers become <mark> (a document's own "<b>" stays text).
MARK_START, MARK_STOP = "\ue000", "\ue001"
SNIPPET_CHARS = 320

TOKEN = re.compile(r'"([^"]*)"|(\S+)')
WORD = re.compile(r"[\w]+")


class SearchInvalid(ValueError):
    """The search asks for something that cannot be answered (a document that is not there, no embeddings)."""


class EmbeddingsMissing(SearchInvalid):
    """A search by meaning before the worker has embedded the documents (or the one asked about)."""


@dataclass
class ExploreQuery:
    """What to look for. Empty fields are left out; `words` takes "quoted phrases" and prefix* terms."""

    words: str = ""
    meaning: str = ""
    like_document: int | None = None
    metadata_key: str = ""
    metadata_value: str = ""
    import_batch: int | None = None
    labeled: bool | None = None
    final_label: str = ""
    predicted_label: str = ""
    probability_min: float | None = None
    probability_max: float | None = None
    reviewer: str = ""
    flagged: bool | None = None
    gold: bool | None = None

    @property
    def by_meaning(self) -> bool:
        return bool(self.meaning.strip()) or self.like_document is not None

    def as_dict(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if value not in ("", None)}


# Filters that read other people's answers: only for roles that may see them (blind review).
ANSWER_FILTERS = ("final_label", "reviewer", "gold")


def _matching_words(project: Project, query: SearchQuery) -> Q:
    """Documents whose words match: those with a stored vector (annotation.DocumentSearchVector, GIN-indexed) that
    matches, and those still waiting for theirs (inserted since the worker last ran) whose text matches: each
    search computes the pending documents' vectors, so it costs more only while a large import's wait.

    One `IN` over both (UNION ALL), not two `IN`s joined by OR: PostgreSQL turns the one into a join driven by the
    GIN index and the few pending rows, while an OR makes it test every document of the project in turn. The
    pending side leaves the project to the outer query.
    """
    indexed = DocumentSearchVector.objects.filter(project=project, vector=query)
    # Only this project's pending documents count: another project's large import must not slow this one's
    # searches (the pending table has no project column; each row is one primary-key probe of its document).
    if not DocumentSearchPending.objects.filter(document__project=project).exists():
        # The usual case, nothing pending: a semi-join, which PostgreSQL can run either way round, walking the
        # newest documents and probing each one's vector (a common word: 26 rows found at once), or from the GIN
        # index (a rare word). The union below always collects every match first: 1.2 s instead of under 0.1 s for
        # a common word at 1,000,000 documents. A document committed after this check was not there when the
        # search began.
        return Q(Exists(indexed.filter(document_id=OuterRef("pk"))))
    indexed = indexed.values("document_id")
    # The text's vector as a subquery per pending row, not a join: with a join PostgreSQL, which prices
    # to_tsvector far below its real cost, may compute it for every document of the table and keep the pending.
    # (Wrapped in a Func: Django's @@ lookup cannot add a Subquery's parameters to the query's.)
    text_vector = Func(
        Subquery(
            # The project inside the subquery: another project's pending row costs a probe, never a to_tsvector.
            Document.objects.filter(pk=OuterRef("document_id"), project=project)
            .annotate(vector=SearchVector("text", config=TEXT_SEARCH_CONFIG))
            .values("vector")[:1]
        ),
        function="",
        output_field=SearchVectorField(),
    )
    waiting = (
        DocumentSearchPending.objects.alias(text_vector=text_vector).filter(text_vector=query).values("document_id")
    )
    return Q(pk__in=indexed.union(waiting, all=True))


@dataclass(frozen=True)
class Term:
    kind: str  # "word", "prefix" or "phrase"
    text: str


def parse_words(words: str) -> list[Term]:
    """`"right to erasure" delet* health` -> a phrase, a prefix and a word; every term must match."""
    terms = []
    for phrase, token in TOKEN.findall(words):
        if phrase.strip():
            terms.append(Term("phrase", phrase.strip()))
        elif token.endswith("*") and WORD.search(token):
            terms.append(Term("prefix", "".join(WORD.findall(token))))
        elif WORD.search(token):
            terms.append(Term("word", token))
    return terms


def _search_query(terms: list[Term]) -> SearchQuery:
    query = None
    for term in terms:
        if term.kind == "phrase":
            part = SearchQuery(term.text, search_type="phrase", config=TEXT_SEARCH_CONFIG)
        elif term.kind == "prefix":
            # Only word characters reach to_tsquery's own syntax, so nothing in it can be an operator.
            part = SearchQuery(f"{term.text}:*", search_type="raw", config=TEXT_SEARCH_CONFIG)
        else:
            part = SearchQuery(term.text, search_type="plain", config=TEXT_SEARCH_CONFIG)
        query = part if query is None else query & part
    return query


def _full_text() -> bool:
    return connection.vendor == "postgresql"


def filtered_documents(project: Project, query: ExploreQuery, *, sees_answers: bool, user) -> QuerySet[Document]:
    """The project's documents matching the words and every filter (not the meaning), unordered."""
    documents = Document.objects.filter(project=project)
    terms = parse_words(query.words)
    if terms and _full_text():
        documents = documents.filter(_matching_words(project, _search_query(terms)))
    elif terms:  # SQLite (make run): substring matching, each term in turn
        for term in terms:
            documents = documents.filter(text__icontains=term.text)
    if query.metadata_key:
        documents = documents.alias(meta_value=KeyTextTransform(query.metadata_key, "metadata"))
        if query.metadata_value:
            documents = documents.filter(meta_value=query.metadata_value)
        else:
            documents = documents.filter(meta_value__isnull=False)
    if query.import_batch is not None:
        documents = documents.filter(import_batch_id=query.import_batch)
    if query.labeled is not None:
        answered = Annotation.objects.filter(document=OuterRef("pk"))
        if not sees_answers:
            answered = answered.filter(reviewer=user)
        documents = documents.filter(Exists(answered) if query.labeled else ~Exists(answered))
    if query.flagged is not None:
        flagged = Q(status=Document.Status.FLAGGED)
        documents = documents.filter(flagged if query.flagged else ~flagged)
    if query.predicted_label or query.probability_min is not None or query.probability_max is not None:
        documents = _by_prediction(project, documents, query)
    if sees_answers:
        documents = _by_answers(project, documents, query)
    return documents


def _by_prediction(project: Project, documents: QuerySet[Document], query: ExploreQuery) -> QuerySet[Document]:
    """With a label: the probability the serving model gives it, within [min, max]; min defaults to 0.5, the
    label's decision point, so "predicts X" alone means what the model would answer. Without a label: the model's
    confidence in its likeliest label (0.4 to 0.6 finds the documents it is least sure about)."""
    if query.predicted_label:
        low = 0.5 if query.probability_min is None else query.probability_min
    else:
        low = 0.0 if query.probability_min is None else query.probability_min
    high = 1.0 if query.probability_max is None else query.probability_max
    return learning_selectors.with_predicted_probability(
        project, documents, label_key=query.predicted_label or None, low=low, high=high
    )


def _by_answers(project: Project, documents: QuerySet[Document], query: ExploreQuery) -> QuerySet[Document]:
    if query.reviewer:
        documents = documents.filter(
            Exists(Annotation.objects.filter(document=OuterRef("pk"), reviewer__username=query.reviewer))
        )
    if query.gold is not None:
        gold = Exists(GoldAnswer.objects.filter(document=OuterRef("pk")))
        documents = documents.filter(gold if query.gold else ~gold)
    if query.final_label:
        documents = documents.filter(_final_label_is(project, query.final_label))
    return documents


def _final_label_is(project: Project, key: str) -> Q:
    """Documents whose final label (annotation.selectors.final_label) includes `key`: the newest adjudication
    says so; or, not adjudicated, the gold answer does; or, neither, every answer agrees and carries it.

    Adjudications and gold answers are few, so they are read here; the agreeing answers are asked in SQL.
    """
    adjudicated_ids = list(Adjudication.objects.filter(project=project).values_list("document_id", flat=True))
    adjudicated = latest_adjudications(adjudicated_ids)
    gold = dict(GoldAnswer.objects.filter(project=project).values_list("document_id", "label_keys"))
    decided_yes = [pk for pk, keys in adjudicated.items() if key in keys]
    decided_yes += [pk for pk, keys in gold.items() if pk not in adjudicated and key in keys]
    decided = set(adjudicated) | set(gold)
    answers = Annotation.objects.filter(document=OuterRef("pk"))
    # An answer without the label, or a label one answer has and another lacks: not unanimous for it.
    carries_key = AnnotationLabel.objects.filter(annotation=OuterRef("pk"), label__key=key)
    lacking = answers.filter(~Exists(carries_key))
    carries_that = AnnotationLabel.objects.filter(annotation=OuterRef("pk"), label_id=OuterRef(OuterRef("label_id")))
    lacking_that = Annotation.objects.filter(document_id=OuterRef("annotation__document_id")).filter(
        ~Exists(carries_that)
    )
    disagreeing = AnnotationLabel.objects.filter(annotation__document=OuterRef("pk")).filter(Exists(lacking_that))
    unanimous = Exists(answers) & ~Exists(lacking) & ~Exists(disagreeing)
    return Q(pk__in=decided_yes) | (~Q(pk__in=list(decided)) & unanimous)


@dataclass
class ResultRow:
    document: Document
    snippet: SafeString
    similarity: float | None = None
    suggestion: list[tuple[str, str, float]] = field(default_factory=list)  # (key, name, probability), best first
    labels: list[str] = field(default_factory=list)  # final labels (or the reviewer's own, blind)
    label_basis: str = ""
    gold: bool = False
    leased_by: str = ""


@dataclass
class ResultPage:
    rows: list[ResultRow]
    count: int  # matches, at most COUNT_LIMIT (see `count_capped`)
    count_capped: bool
    next_after: int | None = None  # words and filters: keyset paging by id, newest first
    next_offset: int | None = None  # meaning: the ranked candidates' next offset
    meaning_body: str = ""


def highlighted(headline: str) -> SafeString:
    """A ts_headline result as safe HTML: everything escaped, only the markers turned into <mark>."""
    pieces = re.split(f"({MARK_START}|{MARK_STOP})", headline)
    html, open_mark = [], False
    for piece in pieces:
        if piece == MARK_START and not open_mark:
            html.append("<mark>")
            open_mark = True
        elif piece == MARK_STOP and open_mark:
            html.append("</mark>")
            open_mark = False
        elif piece not in (MARK_START, MARK_STOP):
            html.append(escape(piece))
    if open_mark:
        html.append("</mark>")
    return mark_safe("".join(html))


def _snippets(documents: list[Document], terms: list[Term]) -> dict[int, SafeString]:
    plain = {d.pk: escape(d.text[:SNIPPET_CHARS] + ("…" if len(d.text) > SNIPPET_CHARS else "")) for d in documents}
    if not terms or not documents or not _full_text():
        return plain
    rows = (
        Document.objects.filter(pk__in=[d.pk for d in documents])
        .annotate(
            headline=SearchHeadline(
                "text",
                _search_query(terms),
                config=TEXT_SEARCH_CONFIG,
                start_sel=MARK_START,
                stop_sel=MARK_STOP,
                max_words=45,
                min_words=20,
            )
        )
        .values_list("pk", "headline")
    )
    return {**plain, **{pk: highlighted(headline) for pk, headline in rows}}


def _suggestions(project: Project, ids: list[int]) -> dict[int, list[tuple[str, str, float]]]:
    names = dict(Label.objects.filter(taxonomy__project=project).values_list("key", "name"))
    out = {}
    for pk, prediction in learning_selectors.predictions_for(ids).items():
        probabilities = prediction.get("probabilities") or {}
        ranked = sorted(probabilities.items(), key=lambda kv: -float(kv[1]))[:2]
        out[pk] = [(key, names.get(key, key), float(p)) for key, p in ranked]
    return out


def page_rows(project: Project, documents: list[Document], query: ExploreQuery, *, sees_answers: bool, user):
    """Result rows (snippet, suggestion, labels) for documents already chosen, e.g. by the API's own paging."""
    return _rows(project, list(documents), parse_words(query.words), sees_answers=sees_answers, user=user)


def _rows(
    project: Project, documents: list[Document], terms: list[Term], *, sees_answers: bool, user
) -> list[ResultRow]:
    ids = [d.pk for d in documents]
    snippets = _snippets(documents, terms)
    suggestions = _suggestions(project, ids)
    if sees_answers:
        finals = final_labels_for(ids)
        labels = {pk: (f.labels, f.basis) for pk, f in finals.items()}
        gold = set(GoldAnswer.objects.filter(document_id__in=ids).values_list("document_id", flat=True))
    else:
        labels = {pk: (keys, "yours") for pk, keys in own_label_keys_for(ids, user).items()}
        gold = set()
    leases = dict(
        Lease.objects.filter(document_id__in=ids, expires_at__gt=timezone.now()).values_list(
            "document_id", "reviewer__username"
        )
    )
    return [
        ResultRow(
            document=d,
            snippet=snippets[d.pk],
            suggestion=suggestions.get(d.pk, []),
            labels=labels.get(d.pk, ([], ""))[0],
            label_basis=labels.get(d.pk, ([], ""))[1],
            gold=d.pk in gold,
            leased_by=leases.get(d.pk, "") if sees_answers else "",
        )
        for d in documents
    ]


def search(
    project: Project,
    query: ExploreQuery,
    *,
    user,
    sees_answers: bool,
    after: int | None = None,
    offset: int = 0,
    page_size: int = PAGE_SIZE,
) -> ResultPage:
    """One page of results. By words and filters, newest first, paged by the last id seen (`after`); by meaning,
    most similar first among the MEANING_CANDIDATES nearest, paged by `offset`."""
    documents = filtered_documents(project, query, sees_answers=sees_answers, user=user)
    terms = parse_words(query.words)
    if query.by_meaning:
        return _search_by_meaning(project, query, documents, terms, user, sees_answers, offset, page_size)
    count = documents[: COUNT_LIMIT + 1].count()
    page = documents.order_by("-pk")
    if after is not None:
        page = page.filter(pk__lt=after)
    found = list(page.select_related("import_batch")[: page_size + 1])
    more = len(found) > page_size
    found = found[:page_size]
    return ResultPage(
        rows=_rows(project, found, terms, sees_answers=sees_answers, user=user),
        count=min(count, COUNT_LIMIT),
        count_capped=count > COUNT_LIMIT,
        next_after=found[-1].pk if more and found else None,
    )


def _search_by_meaning(project, query, documents, terms, user, sees_answers, offset, page_size) -> ResultPage:
    try:
        if query.like_document is not None:
            if not Document.objects.filter(project=project, pk=query.like_document).exists():
                raise SearchInvalid(f"Document {query.like_document} is not in {project.name}.")
            nearest = neighbours.nearest_to_document(
                project=project, document_id=query.like_document, k=MEANING_CANDIDATES + 1
            )
            nearest = [(pk, score) for pk, score in nearest if pk != query.like_document]
        else:
            nearest = neighbours.nearest_to_text(project=project, text=query.meaning, k=MEANING_CANDIDATES)
    except neighbours.NoEmbeddings as error:
        raise EmbeddingsMissing(str(error)) from error
    ranked_ids = [pk for pk, _ in nearest]
    allowed = set(documents.filter(pk__in=ranked_ids).values_list("pk", flat=True))
    ranked = [(pk, score) for pk, score in nearest if pk in allowed]
    window = ranked[offset : offset + page_size]
    by_id = Document.objects.select_related("import_batch").in_bulk([pk for pk, _ in window])
    found = [by_id[pk] for pk, _ in window if pk in by_id]
    rows = _rows(project, found, terms, sees_answers=sees_answers, user=user)
    scores = dict(window)
    for row in rows:
        row.similarity = scores[row.document.pk]
    more = offset + page_size < len(ranked)
    return ResultPage(
        rows=rows,
        count=len(ranked),
        count_capped=len(nearest) >= MEANING_CANDIDATES,
        next_offset=offset + page_size if more else None,
    )


def matching_ids(project: Project, query: ExploreQuery, *, user, sees_answers: bool, limit: int) -> list[int]:
    """Every matching document id (up to `limit`): what "all N matching" selects."""
    documents = filtered_documents(project, query, sees_answers=sees_answers, user=user)
    if query.by_meaning:
        page = _search_by_meaning(project, query, documents, [], user, sees_answers, 0, limit)
        return [row.document.pk for row in page.rows]
    return list(documents.order_by("-pk").values_list("pk", flat=True)[:limit])


def metadata_keys(project: Project, sample: int = 500) -> list[str]:
    """Metadata field names seen in the project's newest documents, for the filter's choices."""
    keys: set[str] = set()
    for metadata in (
        Document.objects.filter(project=project).order_by("-pk").values_list("metadata", flat=True)[:sample]
    ):
        if isinstance(metadata, dict):
            keys.update(str(k) for k in metadata)
    return sorted(keys)


@dataclass(frozen=True)
class BatchAgreement:
    reviewed: int  # documents of the batch someone has since answered one at a time
    agreeing: int  # of those, documents whose every later answer gives exactly the batch's labels


def batch_agreement(batch) -> BatchAgreement:
    """How a bulk batch holds up against later individual review of the same documents: the measure of whether
    labeling by search was as good as reading each document."""
    documents = list(batch.items.values_list("document_id", flat=True))
    later = dict(
        Annotation.objects.filter(document_id__in=documents, created_at__gt=batch.created_at)
        .exclude(source=Annotation.Source.BULK)
        .values_list("id", "document_id")
    )
    keys = annotation_label_keys(later)
    expected = sorted(batch.label_keys)
    verdicts: dict[int, bool] = {}
    for annotation_id, document_id in later.items():
        agrees = sorted(keys.get(annotation_id, [])) == expected
        verdicts[document_id] = verdicts.get(document_id, True) and agrees
    return BatchAgreement(reviewed=len(verdicts), agreeing=sum(verdicts.values()))
