"""Run in label-studio-sdk's own virtual environment: read Docket's Label Studio export with the SDK's models,
label interface and converter, then write tasks built with the SDK's models for Docket to import.

python check_tasks.py CONFIG.xml TASKS.json OUT_DIR  ->  prints a JSON report; writes OUT_DIR/from-sdk.json
"""

import json
import sys
from pathlib import Path

from label_studio_sdk.converter import Converter
from label_studio_sdk.label_interface import LabelInterface
from label_studio_sdk.label_interface.objects import AnnotationValue, PredictionValue, TaskValue
from label_studio_sdk.types import Annotation, Prediction

config_path, tasks_path, out_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
config = Path(config_path).read_text()
tasks = json.loads(Path(tasks_path).read_text())
interface = LabelInterface(config)

report = {"tasks": []}
for number, task in enumerate(tasks, start=1):
    entry = {"text": task["data"]["text"], "annotations": [], "predictions": []}
    entry["data_valid"] = interface.validate_task({"data": task["data"]})
    for raw in task["annotations"]:
        annotation = Annotation.model_validate(raw)  # the SDK's own model: who and when, typed
        entry["annotations"].append(
            {
                "completed_by": annotation.completed_by,
                "created_username": annotation.created_username,
                "created_at": annotation.created_at.isoformat() if annotation.created_at else None,
                "updated_at": annotation.updated_at.isoformat() if annotation.updated_at else None,
                "errors": interface.validate_prediction(raw, return_errors=True),
            }
        )
    for raw in task["predictions"]:
        prediction = Prediction.model_validate({**raw, "task": number})
        entry["predictions"].append(
            {
                "model_version": prediction.model_version,
                "score": prediction.score,
                "errors": interface.validate_prediction(raw, return_errors=True),
            }
        )
    report["tasks"].append(entry)

# The converter Label Studio's own export uses: one record per annotation, with the chosen labels.
converted = out_dir / "json-min"
Converter(config, project_dir=str(out_dir), download_resources=False).convert(
    tasks_path, str(converted), "JSON_MIN", is_dir=False
)
report["json_min"] = json.loads((converted / "result.json").read_text())

# Tasks made by the SDK's models, for Docket to import.
choices = list(interface.get_control("label").labels)
made = []
for i, choice in enumerate(choices):
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}]
    made.append(
        TaskValue(
            data={"text": f"Clause written by the SDK, number {i}.", "source": "label-studio-sdk"},
            annotations=[AnnotationValue(completed_by=1, result=result)],
            predictions=[PredictionValue(model_version="sdk-1", score=0.5, result=result)],
        ).model_dump()
    )
(out_dir / "from-sdk.json").write_text(json.dumps(made))
report["made"] = len(made)
print(json.dumps(report, default=str))
