"""A real Label Studio server takes Docket's export through its API, and Docket takes Label Studio's export back.

    nice -n 10 .venv/bin/python benchmarks/label_studio_server.py [--documents 200] [--port 8310]

Label Studio (PyPI `label-studio`, LABEL_STUDIO below) runs from a virtual environment of its own under /tmp,
made by this script from PyPI the first time; it pins libraries Docket's own do not share, so it never goes into
Docket's environment. The server listens on 127.0.0.1 only, keeps its data in a temporary directory and needs
no internet. Steps, each printed with what the server answered:

1. a Docket project (its own database, docket_ls_bench): documents answered by two reviewers, one dispute
   settled by adjudication, documents without an answer and one with a model prediction;
2. Docket's Label Studio export and labeling config -> a new Label Studio project through its REST API;
3. Label Studio's own JSON export of that project -> a fresh Docket project, compared with the first.
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from bench_setup import configure_django, recreate_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABEL_STUDIO = "label-studio==1.23.2"
VENV = Path(f"/tmp/docket-{LABEL_STUDIO.replace('==', '-')}")
DB_NAME = "docket_ls_bench"
KEYS = ["first_party", "third_party", "data_security"]


def label_studio_command() -> Path:
    command = VENV / "bin" / "label-studio"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", LABEL_STUDIO], check=True)
    return command


def build_project(documents: int):
    from django.contrib.auth import get_user_model

    from annotation.models import Adjudication, Annotation, AnnotationLabel, Document, Label, Membership
    from annotation.services.imports import content_hash
    from annotation.services.projects import project_create
    from learning.models import ModelVersion, QueuePriority

    project = project_create(name="Label Studio round trip", labels=[{"key": key} for key in KEYS])
    ana, ben = (get_user_model().objects.create_user(username=name) for name in ("ana", "ben"))
    for user in (ana, ben):
        Membership.objects.create(project=project, user=user, role="reviewer")
    labels = {label.key: label for label in Label.objects.filter(taxonomy__project=project)}

    def answer(document, user, key):
        annotation = Annotation.objects.create(document=document, reviewer=user)
        AnnotationLabel.objects.create(annotation=annotation, label=labels[key])

    for i in range(documents):
        text = f"Clause {i}: Northwind shares usage statistics with processor {i % 17} under contract {i}."
        document = Document.objects.create(
            project=project,
            external_id=f"ls-{i}",
            text=text,
            content_hash=content_hash(text),
            metadata={"product": ["Mail", "Pay", "Atlas"][i % 3]},
        )
        if i % 4 == 3:
            continue  # not answered yet
        answer(document, ana, KEYS[i % 3])
        if i % 4 == 1:
            answer(document, ben, KEYS[i % 3])
        if i == 2:
            answer(document, ben, KEYS[(i + 1) % 3])  # a dispute, settled below
            Adjudication.objects.create(document=document, project=project, label_keys=[KEYS[i % 3]])
    version = ModelVersion.objects.create(
        project=project, number=1, status="active", kind="fast", taxonomy_version=1, label_keys=KEYS, artifact_path="m"
    )
    QueuePriority.objects.create(
        document=Document.objects.get(project=project, external_id="ls-3"),
        project=project,
        score=0.5,
        model_version=version.number,
        probabilities={"first_party": 0.1, "third_party": 0.8, "data_security": 0.1},
    )
    return project, (ana, ben)


def summary(project) -> list[tuple]:
    from annotation import selectors
    from annotation.models import Document

    documents = list(Document.objects.filter(project=project).order_by("external_id"))
    finals = selectors.final_labels_for(d.pk for d in documents)
    return [(d.external_id, d.text, d.metadata, sorted(finals[d.pk].labels)) for d in documents]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--port", type=int, default=8310)
    args = parser.parse_args()
    recreate_database(DB_NAME)
    configure_django(f"postgres://postgres@127.0.0.1:5432/{DB_NAME}")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from annotation.models import Membership
    from annotation.services.exports import export_stream, label_studio_config
    from annotation.services.imports import ImportOptions, documents_import
    from annotation.services.projects import project_create

    project, reviewers = build_project(args.documents)
    tasks = json.loads("".join(export_stream(project, "label-studio")))
    print(
        f"Docket: {len(tasks)} tasks, {sum(len(t['annotations']) for t in tasks)} annotations, "
        f"{sum(len(t['predictions']) for t in tasks)} predictions exported"
    )

    command = label_studio_command()
    base = f"http://127.0.0.1:{args.port}"
    # Label Studio's data directory (and its admin's token) stays between runs: its first start migrates for
    # minutes, later ones do not.
    data_dir = "/tmp/docket-label-studio-data"
    Path(data_dir).mkdir(exist_ok=True)
    token_file = Path(data_dir) / "docket-token"
    if not token_file.exists():
        token_file.write_text(secrets.token_hex(20))
    token = token_file.read_text().strip()
    with tempfile.TemporaryDirectory(prefix="docket-label-studio-") as work:
        # Nothing of Docket's own environment (its settings module, database URL) reaches the server.
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": data_dir,
            "LANG": "C.UTF-8",
            "LABEL_STUDIO_BASE_DATA_DIR": data_dir,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        }
        log = open(Path(data_dir) / "server.log", "w")
        started = time.perf_counter()
        server = subprocess.Popen(
            [
                str(command),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(args.port),
                "--host",
                base,
                "--data-dir",
                data_dir,
                "--username",
                "bench@docket.local",
                "--password",
                secrets.token_urlsafe(12),
                "--user-token",
                token,
                "--enable-legacy-api-token",
            ],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            session = requests.Session()
            session.headers["Authorization"] = f"Token {token}"
            deadline = time.monotonic() + 600
            while True:
                try:
                    if session.get(f"{base}/api/projects", timeout=5).status_code == 200:
                        break
                except requests.RequestException:  # not listening yet, or too busy starting to answer
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    print(Path(data_dir, "server.log").read_text()[-3000:])
                    sys.exit("Label Studio did not start")
                time.sleep(2)
            version = session.get(f"{base}/api/version").json().get("label-studio-os-package", {}).get("version")
            print(f"Label Studio {version} answering on {base} after {time.perf_counter() - started:.0f} s")

            created = session.post(
                f"{base}/api/projects", json={"title": "From Docket", "label_config": label_studio_config(project)}
            )
            created.raise_for_status()
            ls_project = created.json()["id"]
            start = time.perf_counter()
            imported = session.post(f"{base}/api/projects/{ls_project}/import", json=tasks, timeout=300)
            if imported.status_code != 201:
                print(f"Label Studio refused the import: {imported.text[:1000]}")
            print(
                f"import into Label Studio: HTTP {imported.status_code} in {time.perf_counter() - start:.1f} s: "
                f"{json.dumps({k: v for k, v in imported.json().items() if k.endswith('count')})}"
            )
            detail = session.get(f"{base}/api/projects/{ls_project}").json()
            print(
                f"Label Studio project: {detail.get('task_number')} tasks, "
                f"{detail.get('total_annotations_number')} annotations, "
                f"{detail.get('total_predictions_number')} predictions"
            )

            start = time.perf_counter()
            exported = session.get(
                f"{base}/api/projects/{ls_project}/export",
                params={"exportType": "JSON", "download_all_tasks": "true"},
                timeout=300,
            )
            exported.raise_for_status()
            back = exported.json()
            first = back[0]["annotations"][0] if back and back[0]["annotations"] else {}
            as_written = {key: first.get(key) for key in ("completed_by", "created_username", "created_at")}
            print(
                f"export from Label Studio: {len(back)} tasks in {time.perf_counter() - start:.1f} s; an annotation "
                f"as Label Studio writes it: {json.dumps(as_written)}; Docket's meta kept: "
                f"{'docket' in (back[0].get('meta') or {}) if back else False}"
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()

        path = Path(work) / "from-label-studio.json"
        path.write_text(json.dumps(back))
        target = project_create(name="Back from Label Studio", labels=[{"key": key} for key in KEYS])
        for user in reviewers:
            Membership.objects.create(project=target, user=user, role="reviewer")
        batch = documents_import(project=target, path=path, options=ImportOptions())
    print(
        f"import into Docket: format {batch.format}, {batch.created_count} stored, {batch.rejected_count} refused, "
        f"{batch.annotation_count} answers"
    )
    same = summary(target) == summary(project)
    print(f"documents, ids, metadata and final labels the same after Docket -> Label Studio -> Docket: {same}")
    if not same:
        before, after = summary(project), summary(target)
        print("first differences:", [(b, a) for b, a in zip(before, after, strict=False) if b != a][:3])


if __name__ == "__main__":
    main()
