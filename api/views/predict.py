"""Predict: classify texts with the project's active model (or a pinned version)."""

import re
import time

from django.conf import settings
from django.db.models import F
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.exceptions import ProjectNotFound
from annotation.services import taxonomy
from api.auth import access_project
from api.exceptions import ModelNotReady, TooLarge
from api.input import JsonInput
from api.models import Scope
from api.schema import errors, exactly_one_of
from api.views.base import ApiView
from learning import selectors as learning_selectors
from learning import serving


class PredictDocument(JsonInput):
    id = serializers.CharField(max_length=255, help_text="Your identifier, echoed back in the result.")
    text = serializers.CharField(trim_whitespace=False, allow_blank=False)

    def get_fields(self) -> dict:
        fields = super().get_fields()
        fields["text"].max_length = settings.DOCKET_MAX_TEXT_CHARS  # for the schema; the view answers 413
        return fields


@exactly_one_of("texts", "documents")
class PredictInput(JsonInput):
    model_version = serializers.IntegerField(
        required=False, min_value=1, help_text="Pin a version (ready, active or retired); default: the active one."
    )

    def get_fields(self) -> dict:
        # The limits are settings, read when the serializer is made, so the schema states the ones in force.
        fields = super().get_fields()
        limit, max_chars = settings.DOCKET_API_MAX_BATCH, settings.DOCKET_MAX_TEXT_CHARS
        fields["texts"] = serializers.ListField(
            child=serializers.CharField(trim_whitespace=False, max_length=max_chars),
            required=False,
            min_length=1,
            max_length=limit,
        )
        fields["documents"] = serializers.ListField(
            child=PredictDocument(), required=False, min_length=1, max_length=limit
        )
        return fields

    def validate(self, data: dict) -> dict:
        if ("texts" in data) == ("documents" in data):
            raise serializers.ValidationError("Send either `texts` or `documents`, not both and not neither.")
        return data


class PredictResult(serializers.Serializer):
    id = serializers.CharField(required=False, help_text="Present when the input was `documents`.")
    labels = serializers.ListField(
        child=serializers.CharField(), help_text="The argmax label, or every label at or above its threshold."
    )
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="Every label's probability.")


class PredictOutput(serializers.Serializer):
    model_version = serializers.IntegerField()
    taxonomy_version = serializers.IntegerField(
        help_text="The project's taxonomy version now: labels and probabilities are expressed in it."
    )
    model_taxonomy_version = serializers.IntegerField(help_text="The taxonomy version the model was trained on.")
    multi_label = serializers.BooleanField()
    labels = serializers.ListField(
        child=serializers.CharField(), help_text="Today's labels the model speaks for (merged labels once)."
    )
    unmapped_labels = serializers.ListField(
        child=serializers.CharField(),
        help_text="Labels the model was trained on that no current label stands for (split, deleted, deprecated); "
        "their probabilities are left out.",
    )
    results = PredictResult(many=True)


def _decide(probabilities: dict[str, float], *, multi_label: bool) -> list[str]:
    """The argmax label, or (multi-label) every label at or above 0.5: each head's threshold is folded in."""
    if not probabilities:
        return []
    if multi_label:
        return [key for key, probability in probabilities.items() if probability >= 0.5]
    return [max(probabilities, key=probabilities.get)]


class PredictApi(ApiView):
    @extend_schema(
        operation_id="predict",
        tags=["predict"],
        summary="Classify texts",
        description=(
            "Scope `predict`; any member. Up to DOCKET_API_MAX_BATCH (default 64) texts of at most "
            "DOCKET_MAX_TEXT_CHARS characters each; more is 413. Answers 503 while the project has no model."
        ),
        request=PredictInput,
        responses={200: PredictOutput, **errors(400, 404, 413, 503)},
        examples=[
            OpenApiExample("Texts", value={"texts": ["We sell your email address to advertisers."]}, request_only=True),
            OpenApiExample(
                "Documents, pinned version",
                value={"documents": [{"id": "form-981", "text": "Logs are kept for 30 days."}], "model_version": 3},
                request_only=True,
            ),
            OpenApiExample(
                "Result",
                value={
                    "model_version": 4,
                    "taxonomy_version": 3,
                    "model_taxonomy_version": 2,
                    "multi_label": False,
                    "labels": ["first_party", "third_party", "data_retention"],
                    "unmapped_labels": [],
                    "results": [
                        {
                            "labels": ["third_party"],
                            "probabilities": {"first_party": 0.08, "third_party": 0.87, "data_retention": 0.05},
                        }
                    ],
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request, project_id: int) -> Response:
        # The active version's number and the taxonomy's version come with the project, key and role: one query,
        # compiled once for every request (annotation.statements).
        project = access_project(
            request, project_id, scope=Scope.PREDICT, columns=_serving_columns, compiled_as="api.predict_project"
        )
        _refuse_oversized(request.data)
        data = _plain_texts(request.data)
        if data is None:
            serializer = PredictInput(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
        texts = data["texts"] if "texts" in data else [d["text"] for d in data["documents"]]
        try:
            model = serving.served_model(
                project, number=data.get("model_version"), active_number=project.active_model_number
            )
        except serving.NoModelReady as error:
            raise ModelNotReady(str(error)) from error
        except serving.UnknownModelVersion as error:
            raise ProjectNotFound(str(error)) from error
        started = time.perf_counter()
        probabilities = model.predict_proba(texts)
        model_ms = (time.perf_counter() - started) * 1000
        # The model may predate a merge or split: answer in today's labels, never in merged-away ones.
        version = project.taxonomy_version_now
        current = taxonomy.current_labels(
            project,
            model_taxonomy_version=model.taxonomy_version,
            keys=model.label_keys,
            current_version=version,
            current_keys=taxonomy.label_keys_at(project, version) if version is not None else None,
        )
        results = []
        for row, scores in enumerate(probabilities):
            raw = dict(zip(model.label_keys, map(float, scores), strict=True))
            mapped = current.probabilities(raw, multi_label=model.multi_label)
            result = {"labels": _decide(mapped, multi_label=model.multi_label), "probabilities": mapped}
            if "documents" in data:
                result = {"id": data["documents"][row]["id"], **result}
            results.append(result)
        # Server-Timing lets a client (and benchmarks/api_predict.py) tell the model's time from the API's.
        return Response(
            headers={"Server-Timing": f"model;dur={model_ms:.2f}"},
            data={
                "model_version": model.number,
                "taxonomy_version": current.taxonomy_version,
                "model_taxonomy_version": model.taxonomy_version,
                "multi_label": model.multi_label,
                "labels": current.labels,
                "unmapped_labels": current.unmapped,
                "results": results,
            },
        )


def _serving_columns() -> dict:
    return {**learning_selectors.serving_columns(), "taxonomy_version_now": F("taxonomy__version")}


SURROGATE = re.compile(r"[\ud800-\udfff]")


def _plain_texts(body) -> dict | None:
    """The common body, `{"texts": [...]}` with an optional `model_version`, when PredictInput would accept it
    as it is; None sends every other body to PredictInput, for its checks and its exact errors. Building that
    serializer's fields for each request was a tenth of the API's own time."""
    if not isinstance(body, dict) or "texts" not in body or not body.keys() <= {"texts", "model_version"}:
        return None
    texts, number = body["texts"], body.get("model_version", 1)
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        return None
    if not isinstance(texts, list) or not 1 <= len(texts) <= settings.DOCKET_API_MAX_BATCH:
        return None
    max_chars = settings.DOCKET_MAX_TEXT_CHARS
    for text in texts:
        # CharField(trim_whitespace=False, max_length): a non-empty string without NUL or surrogate characters.
        if type(text) is not str or not 0 < len(text) <= max_chars or "\x00" in text:
            return None
        if not text.isascii() and SURROGATE.search(text):
            return None
    return body


def _refuse_oversized(body) -> None:
    """413, not 400, for too many texts or too long a text: the caller must split the batch, not fix a field."""
    if not isinstance(body, dict):
        return
    items = body.get("texts") if "texts" in body else body.get("documents")
    if not isinstance(items, list):
        return
    limit = settings.DOCKET_API_MAX_BATCH
    if len(items) > limit:
        raise TooLarge(f"At most {limit} texts per request; split the batch.", limit=limit, received=len(items))
    max_chars = settings.DOCKET_MAX_TEXT_CHARS
    for index, item in enumerate(items):
        text = item.get("text") if isinstance(item, dict) else item
        if isinstance(text, str) and len(text) > max_chars:
            raise TooLarge(
                f"Text {index} has {len(text):,} characters; at most {max_chars:,} are accepted.",
                limit=max_chars,
                received=len(text),
            )
