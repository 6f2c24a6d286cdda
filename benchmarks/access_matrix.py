"""Access matrix: every page and API operation for every role and kind of key, across two projects.

    .venv/bin/python benchmarks/access_matrix.py [--write var/bench/access_matrix.json]

Builds projects A and B in its own PostgreSQL database (docket_bench_access, dropped and recreated, owned by
docket_owner and used as the restricted docket_app role exactly as production runs), each with an admin, a lead,
two reviewers, a service account, labeled, gold, overlapped and queued documents and a small real model. Then, in
process through Django's test client (no network), it sends:

- API: each of 18 kinds of caller (personal tokens of every role and scope, service keys of three roles, a key
  of the other project, one covering both, revoked, expired, unknown and none) on every operation of both
  projects, and on A's path with B's object ids;
- pages: each of 8 signed-in people (and anonymous) on every project page of both projects, the Django admin;
- the browsable API with each person's session;
- blind-review reads (gold and colleagues' answers) by reviewers, leads and admins;
- the takeover paths of the outside review (adding another project's service account or invited person,
  asking for their password link, signing in as them, reusing a service-account name);
- sign-in lockout and invalid-key throttling.

A request "leaks" when it is allowed beyond the caller's role, scope, key or project, or when its answer holds
another project's names or texts, or an answer a blind reviewer must not see. The table it prints is the one in
docs/security.md. Needs PostgreSQL with the docket_owner and docket_app roles (`make services` makes them).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench_setup import HOST, ROOT, configure_django, recreate_database

sys.path.insert(0, str(ROOT))
DB_NAME = "docket_bench_access"
OWNER_URL = f"postgres://docket_owner:docket_owner@{HOST}:5432/{DB_NAME}"
APP_URL = f"postgres://docket_app:docket_app@{HOST}:5432/{DB_NAME}"
ARTIFACTS = Path(tempfile.mkdtemp(prefix="docket-bench-access-"))
B_MARKERS = ("Whistleblower intake B", "B-CONFIDENTIAL", "b-admin", "b-lead", "b-reviewer", "carol@b.example")
REFUSED_API = {401, 403, 404, 429}
REFUSED_PAGE = {302, 401, 403, 404, 405}
RANK = {None: -1, "reviewer": 0, "lead": 1, "admin": 2}
# Operations whose path names an object: asked on the own project with the other project's ids too.
OBJECT_OPERATIONS = {
    "keys_revoke",
    "labels_update",
    "documents_retrieve",
    "annotations_create",
    "training_runs_retrieve",
}


def prepare_database() -> None:
    """A database owned by docket_owner, migrated and granted as in docs/security.md."""
    subprocess.run(["bash", str(ROOT / ".ci" / "ensure-services.sh")], check=True, stdout=subprocess.DEVNULL)
    recreate_database(DB_NAME)
    sql = f'ALTER DATABASE "{DB_NAME}" OWNER TO docket_owner'
    subprocess.run(["psql", "-h", HOST, "-U", "postgres", "-q", "-c", sql], check=True)
    env = {**os.environ, "DATABASE_URL": OWNER_URL, "DOCKET_DEVELOPMENT": "1", "LOG_LEVEL": "WARNING"}
    env["DOCKET_VAR_DIR"] = str(ROOT / "var" / "bench")
    for command in (["migrate", "--noinput", "-v", "0"], ["grant_app_role", "docket_app"]):
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
        )


@dataclass
class Tally:
    requests: int = 0
    as_expected: int = 0
    leaks: int = 0
    server_errors: int = 0
    leak_examples: list = field(default_factory=list)
    surprises: list = field(default_factory=list)

    def add(self, *, expected_ok: bool, leak: bool, status: int, what: str) -> None:
        self.requests += 1
        self.server_errors += status >= 500
        self.as_expected += expected_ok and not leak and status < 500
        if leak:
            self.leaks += 1
            self.leak_examples.append(what)
        elif not expected_ok and len(self.surprises) < 20:
            self.surprises.append(what)


TALLIES: dict[str, Tally] = defaultdict(Tally)


def holds_b(body: bytes) -> bool:
    text = body.decode("utf-8", "replace")
    return any(marker in text for marker in B_MARKERS)


# --- The two projects ---------------------------------------------------------------------------------------


def build_world() -> dict:
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from annotation.models import (
        Annotation,
        AnnotationLabel,
        Document,
        GoldAnswer,
        Label,
        Membership,
        Project,
        Taxonomy,
    )
    from annotation.services.imports import content_hash
    from api import services
    from api.models import ApiKey
    from learning.ml.classifier import Classifier, TrainingArgs
    from learning.models import ModelVersion, TrainingRun

    User = get_user_model()
    keys = ["first_party", "third_party", "data_security"]
    texts = {
        "first_party": ["We collect your email address.", "We record the pages you visit.", "We keep your name."],
        "third_party": ["We share data with advertisers.", "Vendors receive device ids.", "We sell aggregates."],
        "data_security": ["Data is encrypted at rest.", "We use access controls.", "Passwords are hashed."],
    }
    model = Classifier.create(keys, args=TrainingArgs(max_steps=0))
    model.fit([t for k in keys for t in texts[k]], [k for k in keys for _ in texts[k]], fine_tune=False)
    artifact = model.save(ARTIFACTS / "model")

    world: dict = {"users": {}, "projects": {}, "docs": {}, "labels": {}}
    people = {
        "A": {"admin": "a-admin", "lead": "a-lead", "reviewer": "a-reviewer", "reviewer2": "a-reviewer-two"},
        "B": {"admin": "b-admin", "lead": "b-lead", "reviewer": "b-reviewer", "reviewer2": "b-reviewer-two"},
    }
    for side, name in (("A", "Project A privacy review"), ("B", "Whistleblower intake B")):
        project = Project.objects.create(name=name, overlap_rate=0.0, gold_rate=0.0)
        taxonomy = Taxonomy.objects.create(project=project)
        labels = [
            Label.objects.create(taxonomy=taxonomy, key=k, name=k.replace("_", " "), order=i, shortcut=str(i + 1))
            for i, k in enumerate(keys)
        ]
        world["projects"][side] = project
        world["labels"][side] = {label.key: label for label in labels}
        for role, username in people[side].items():
            user = User.objects.create_user(username=username, email=f"{username}@example.org", password="pw-12345678")
            user.is_staff = role == "admin"
            user.save()
            Membership.objects.create(project=project, user=user, role="reviewer" if role == "reviewer2" else role)
            world["users"][username] = user
        marker = "B-CONFIDENTIAL " if side == "B" else ""

        def doc(kind: str, status: str, project=project, marker=marker, side=side) -> Document:
            text = f"{marker}{side} {kind} document text."
            return Document.objects.create(
                project=project,
                text=text,
                content_hash=content_hash(text),
                status=status,
                external_id=f"{side}-{kind}",
            )

        def answer(document, user, key, side=side):
            annotation = Annotation.objects.create(document=document, reviewer=user)
            AnnotationLabel.objects.create(annotation=annotation, label=world["labels"][side][key])

        r1, r2 = world["users"][people[side]["reviewer"]], world["users"][people[side]["reviewer2"]]
        own = doc("own", "labeled")
        answer(own, r1, "first_party")
        gold = doc("gold", "labeled")
        GoldAnswer.objects.create(document=gold, project=project, label_keys=["data_security"])
        overlap = doc("overlap", "labeled")
        answer(overlap, r2, "third_party")  # a colleague's answer the reviewer may still be asked to give
        queued = doc("queued", "queued")
        world["docs"][side] = {"own": own, "gold": gold, "overlap": overlap, "queued": queued}
        for number, status in ((1, "retired"), (2, "active")):
            ModelVersion.objects.create(
                project=project,
                number=number,
                status=status,
                kind="fast",
                taxonomy_version=taxonomy.version,
                label_keys=keys,
                artifact_path=str(artifact),
                macro_f1=0.8,
                metrics={"macro_f1": 0.8},
            )
        world[f"run_{side}"] = TrainingRun.objects.create(
            project=project, kind="fast", trigger="labels", status="succeeded"
        )

    a, b = world["projects"]["A"], world["projects"]["B"]
    u = world["users"]
    # A person who is admin of A and a plain reviewer of B.
    both = User.objects.create_user(username="both-projects-person", password="pw-12345678")
    Membership.objects.create(project=a, user=both, role="admin")
    Membership.objects.create(project=b, user=both, role="reviewer")
    u["both-projects-person"] = both

    def personal(user, projects, scopes, **kw) -> str:
        return services.api_key_create(actor=user, projects=projects, name="k", scopes=scopes, **kw).token

    def service(issuer, project, scopes, role, name) -> tuple[str, object]:
        issued = services.api_key_create(
            actor=issuer, projects=[project], name=name, scopes=scopes, kind="service", role=role
        )
        return issued.token, issued.key.user

    ALL = ["predict", "read", "write", "admin"]
    revoked = services.api_key_create(actor=u["a-admin"], projects=[a], name="old", scopes=ALL)
    services.api_key_revoke(key=revoked.key, actor=u["a-admin"])
    expired = services.api_key_create(actor=u["a-admin"], projects=[a], name="expired", scopes=ALL)
    past = timezone.now() - timedelta(days=2)
    ApiKey.objects.filter(pk=expired.key.pk).update(created_at=past - timedelta(days=1), expires_at=past)
    svc_admin = service(u["a-admin"], a, ALL, "admin", "svc-admin")
    svc_reviewer = service(u["a-admin"], a, ["read", "write", "predict"], "reviewer", "svc-reviewer")
    svc_lead = service(u["a-admin"], a, ["read", "predict"], "lead", "svc-lead")
    svc_b = service(u["b-admin"], b, ALL, "admin", "intake-b")
    # (name, token, the user it acts as, projects it covers, scopes, the service account's project or None)
    world["keys"] = [
        ("admin A, all scopes", personal(u["a-admin"], [a], ALL), u["a-admin"], {a.pk}, set(ALL), None),
        ("admin A, read", personal(u["a-admin"], [a], ["read"]), u["a-admin"], {a.pk}, {"read"}, None),
        ("admin A, predict", personal(u["a-admin"], [a], ["predict"]), u["a-admin"], {a.pk}, {"predict"}, None),
        ("admin A, write", personal(u["a-admin"], [a], ["write"]), u["a-admin"], {a.pk}, {"write"}, None),
        ("admin A, admin", personal(u["a-admin"], [a], ["admin"]), u["a-admin"], {a.pk}, {"admin"}, None),
        (
            "lead A, read+predict",
            personal(u["a-lead"], [a], ["read", "predict"]),
            u["a-lead"],
            {a.pk},
            {"read", "predict"},
            None,
        ),
        (
            "reviewer A, read+predict",
            personal(u["a-reviewer"], [a], ["read", "predict"]),
            u["a-reviewer"],
            {a.pk},
            {"read", "predict"},
            None,
        ),
        (
            "reviewer A, predict",
            personal(u["a-reviewer"], [a], ["predict"]),
            u["a-reviewer"],
            {a.pk},
            {"predict"},
            None,
        ),
        ("service A as admin, all scopes", *svc_admin, {a.pk}, set(ALL), a.pk),
        ("service A as reviewer, read+write+predict", *svc_reviewer, {a.pk}, {"read", "write", "predict"}, a.pk),
        ("service A as lead, read+predict", *svc_lead, {a.pk}, {"read", "predict"}, a.pk),
        ("revoked (admin A)", revoked.token, None, set(), set(), "invalid"),
        ("expired (admin A)", expired.token, None, set(), set(), "invalid"),
        ("unknown key", "dk_00000000_not-a-real-secret-at-all", None, set(), set(), "invalid"),
        ("admin B, all scopes", personal(u["b-admin"], [b], ALL), u["b-admin"], {b.pk}, set(ALL), None),
        ("service B as admin, all scopes", *svc_b, {b.pk}, set(ALL), b.pk),
        (
            "admin A and reviewer B, read+predict on both",
            personal(both, [a, b], ["read", "predict"]),
            both,
            {a.pk, b.pk},
            {"read", "predict"},
            None,
        ),
        ("no key", None, None, set(), set(), "none"),
    ]
    world["spare_keys"] = {
        side: services.api_key_create(
            actor=u[f"{side.lower()}-admin"], projects=[world["projects"][side]], name="spare", scopes=["predict"]
        ).key
        for side in ("A", "B")
    }
    return world


def role_of(user, project) -> str | None:
    from annotation import permissions

    return permissions.role_in(user, project) if user is not None else None


# --- API ---------------------------------------------------------------------------------------------------


def api_operations(world: dict, side: str, obj_side: str) -> list[tuple[str, str, str, str, str, object]]:
    """(name, method, path, scope, least role, body) on `side`'s project, with `obj_side`'s object ids."""
    p = f"/api/v1/projects/{world['projects'][side].pk}"
    docs, label = world["docs"][obj_side], world["labels"][obj_side]["third_party"]
    run, spare = world[f"run_{obj_side}"], world["spare_keys"][obj_side]
    stamp = time.monotonic_ns()
    return [
        ("projects_retrieve", "get", p, "read", "reviewer", None),
        ("projects_update", "patch", p, "admin", "admin", {"fast_retrain_every": 7}),
        ("keys_list", "get", f"{p}/keys", "admin", "admin", None),
        ("keys_create", "post", f"{p}/keys", "admin", "admin", {"name": "m", "kind": "personal", "scopes": ["admin"]}),
        ("keys_revoke", "post", f"{p}/keys/{spare.pk}/revoke", "admin", "admin", None),
        ("taxonomy_retrieve", "get", f"{p}/taxonomy", "read", "reviewer", None),
        ("labels_list", "get", f"{p}/labels", "read", "reviewer", None),
        ("labels_create", "post", f"{p}/labels", "write", "admin", {"key": f"l{stamp}", "name": f"L {stamp}"}),
        ("labels_update", "patch", f"{p}/labels/{label.pk}", "write", "admin", {"name": "Third parties"}),
        ("documents_list", "get", f"{p}/documents", "read", "reviewer", None),
        ("documents_retrieve", "get", f"{p}/documents/{docs['queued'].pk}", "read", "reviewer", None),
        (
            "documents_bulk_create",
            "post",
            f"{p}/documents",
            "write",
            "admin",
            {"documents": [{"text": f"Cookies last {stamp} days."}]},
        ),
        ("annotations_list", "get", f"{p}/annotations", "read", "reviewer", None),
        ("annotations_export", "get", f"{p}/annotations/export", "read", "admin", None),
        (
            "annotations_create",
            "post",
            f"{p}/annotations",
            "write",
            "reviewer",
            {"document": docs["queued"].pk, "labels": ["first_party"]},
        ),
        ("predict", "post", f"{p}/predict", "predict", "reviewer", {"texts": ["We sell your email."]}),
        ("models_list", "get", f"{p}/models", "read", "reviewer", None),
        ("models_retrieve", "get", f"{p}/models/1", "read", "reviewer", None),
        ("models_promote", "post", f"{p}/models/2/promote", "admin", "admin", None),
        ("models_rollback", "post", f"{p}/models/rollback", "admin", "admin", None),
        ("training_runs_list", "get", f"{p}/training-runs", "read", "reviewer", None),
        ("training_runs_retrieve", "get", f"{p}/training-runs/{run.pk}", "read", "reviewer", None),
    ]


def expected_api(key, project, op: str, scope: str, least_role: str) -> bool:
    name, token, user, projects, scopes, own = key
    if own in ("invalid", "none"):
        return False
    if project.pk not in projects or (isinstance(own, int) and own != project.pk):
        return False
    if op == "keys_create" and isinstance(own, int):
        return False  # a service account holds no personal tokens
    return scope in scopes and RANK[role_of(user, project)] >= RANK[least_role]


def body_leaks(response, caller_sees_b: bool) -> bool:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return not caller_sees_b and holds_b(content)


def run_api(world: dict) -> None:
    from django.test import Client

    b = world["projects"]["B"]
    for key in world["keys"]:
        name, token, user, projects, scopes, own = key
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        client = Client(**headers)
        sees_b = b.pk in projects and own not in ("invalid", "none")
        for side, obj_side, kind in (
            ("A", "A", "API, own project"),
            ("B", "B", "API, other project"),
            ("A", "B", "API, other project's ids"),
        ):
            project = world["projects"][side]
            for op, method, path, scope, least, body in api_operations(world, side, obj_side):
                if side != obj_side and op not in OBJECT_OPERATIONS:
                    continue  # without an object id the path is the same as on the own project
                call = getattr(client, method)
                response = call(
                    path, data=json.dumps(body) if body is not None else None, content_type="application/json"
                )
                allowed = expected_api(key, project, op, scope, least) and side == obj_side
                if side != obj_side:  # another project's object under one's own project: never found
                    allowed = False
                passed = response.status_code not in REFUSED_API
                leak = (passed and not allowed and response.status_code < 500) or body_leaks(response, sees_b)
                kind_name = kind if own not in ("invalid", "none") else "API, revoked, expired, unknown or no key"
                TALLIES[kind_name].add(
                    expected_ok=passed == allowed,
                    leak=leak,
                    status=response.status_code,
                    what=f"{name} {method.upper()} {path} -> {response.status_code}",
                )


# --- Pages ---------------------------------------------------------------------------------------------------


def page_list(world: dict, side: str) -> list[tuple[str, str]]:
    """(path, action needed) for every project page of `side`."""
    p = world["projects"][side].pk
    docs = world["docs"][side]
    return [
        (f"/projects/{p}/", "view"),
        (f"/projects/{p}/label/", "label"),
        (f"/projects/{p}/my-work/", "label"),
        (f"/projects/{p}/documents/{docs['own'].pk}", "label"),
        (f"/projects/{p}/models/", "view"),
        (f"/projects/{p}/models/status/", "view"),
        (f"/projects/{p}/models/1/", "view"),
        (f"/projects/{p}/quality/", "view_quality"),
        (f"/projects/{p}/quality/adjudication/", "adjudicate"),
        (f"/projects/{p}/quality/gold/", "manage_gold"),
        (f"/projects/{p}/quality/label-errors/", "manage_gold"),
        (f"/projects/{p}/manage/", "manage_taxonomy"),
        (f"/projects/{p}/manage/settings/", "manage_settings"),
        (f"/projects/{p}/manage/taxonomy/", "manage_taxonomy"),
        (f"/projects/{p}/manage/taxonomy/versions/", "manage_taxonomy"),
        (f"/projects/{p}/manage/taxonomy/export.json", "manage_taxonomy"),
        (f"/projects/{p}/manage/members/", "manage_members"),
        (f"/projects/{p}/manage/audit/", "view_audit"),
        (f"/projects/{p}/manage/audit/export.csv", "view_audit"),
        (f"/projects/{p}/keys/", "manage_keys"),
        (f"/admin/annotation/project/{p}/import/", "import"),
        (f"/admin/annotation/project/{p}/export/jsonl/", "export"),
        (f"/projects/{p}/models/curve.svg", "view"),
        (f"/projects/{p}/manage/taxonomy/labels/new/", "manage_taxonomy"),
        (f"/projects/{p}/manage/taxonomy/labels/third_party/", "manage_taxonomy"),
        (f"/projects/{p}/manage/taxonomy/versions/1/", "manage_taxonomy"),
        (f"/projects/{p}/manage/taxonomy/export.yaml", "manage_taxonomy"),
        (f"/projects/{p}/manage/taxonomy/import/", "manage_taxonomy"),
    ]


def page_posts(world: dict, side: str) -> list[tuple[str, str, dict]]:
    """(path, action needed, form) for project pages that change something."""
    p = world["projects"][side].pk
    stamp = time.monotonic_ns()
    return [
        (
            f"/projects/{p}/manage/members/",
            "manage_members",
            {"identifier": f"n{stamp}@{side}.example", "role": "reviewer"},
        ),
        (
            f"/projects/{p}/keys/",
            "manage_keys",
            {"name": f"k{stamp}", "kind": "personal", "scopes": ["predict"], "role": "reviewer"},
        ),
        (
            f"/projects/{p}/manage/taxonomy/labels/new/",
            "manage_taxonomy",
            {"key": f"k{stamp}", "name": f"K {stamp}", "color": "#336699"},
        ),
        (f"/projects/{p}/models/train/", "manage_models", {}),
    ]


def foreign_page_paths(world: dict) -> list[tuple[str, str]]:
    """A's pages naming B's objects: never found, whoever asks."""
    a, b = world["projects"]["A"].pk, world["projects"]["B"]
    doc = world["docs"]["B"]["own"].pk
    membership = b.memberships.order_by("pk").first().pk
    key = world["spare_keys"]["B"].pk
    return [
        ("get", f"/projects/{a}/documents/{doc}"),
        ("get", f"/projects/{a}/quality/adjudication/{doc}/"),
        ("post", f"/projects/{a}/manage/members/{membership}/password-link/"),
        ("post", f"/projects/{a}/manage/members/{membership}/remove/"),
        ("post", f"/projects/{a}/keys/{key}/revoke/"),
    ]


PEOPLE = [
    "a-admin",
    "a-lead",
    "a-reviewer",
    "a-reviewer-two",
    "b-admin",
    "b-lead",
    "b-reviewer",
    "both-projects-person",
    None,
]


def run_pages(world: dict) -> None:
    from django.test import Client

    from annotation import permissions

    b = world["projects"]["B"]
    for username in PEOPLE:
        client = Client()
        user = world["users"].get(username) if username else None
        if user is not None:
            client.force_login(user)
        sees_b = user is not None and role_of(user, b) is not None
        for side in ("A", "B"):
            project = world["projects"][side]
            for path, action in page_list(world, side):
                response = client.get(path)
                role = role_of(user, project)
                allowed = permissions.role_allows(role, action) and (not path.startswith("/admin/") or user.is_staff)
                passed = response.status_code not in REFUSED_PAGE
                leak = (passed and not allowed and response.status_code < 500) or body_leaks(response, sees_b)
                TALLIES["Pages, signed in or anonymous"].add(
                    expected_ok=passed == allowed,
                    leak=leak,
                    status=response.status_code,
                    what=f"{username} GET {path} -> {response.status_code}",
                )
            for path, action, form in page_posts(world, side):
                response = client.post(path, form)
                role = role_of(user, project)
                allowed = permissions.role_allows(role, action)
                passed = response.status_code not in REFUSED_PAGE or (
                    allowed and response.status_code == 302 and "/accounts/login/" not in response.get("Location", "")
                )
                leak = (passed and not allowed and response.status_code < 500) or body_leaks(response, sees_b)
                TALLIES["Pages, signed in or anonymous"].add(
                    expected_ok=passed == allowed,
                    leak=leak,
                    status=response.status_code,
                    what=f"{username} POST {path} -> {response.status_code}",
                )
        for method, path in foreign_page_paths(world):
            response = getattr(client, method)(path)
            passed = response.status_code not in REFUSED_PAGE
            TALLIES["Pages, other project's ids"].add(
                expected_ok=not passed,
                leak=passed or body_leaks(response, sees_b),
                status=response.status_code,
                what=f"{username} {method.upper()} {path} -> {response.status_code}",
            )
        # The project list, the Django admin's lists and the browsable API: nothing of B for A-only people.
        for path in ("/", "/admin/", "/admin/annotation/importbatch/", "/api/v1/projects", "/accounts/tokens/"):
            response = client.get(path)
            TALLIES["Pages, signed in or anonymous"].add(
                expected_ok=True,
                leak=body_leaks(response, sees_b),
                status=response.status_code,
                what=f"{username} GET {path} -> {response.status_code}",
            )
        # The API with the person's browser session (every scope of their roles).
        for side in ("A", "B"):
            project = world["projects"][side]
            for _op, method, path, _scope, least, body in api_operations(world, side, side):
                response = getattr(client, method)(
                    path, data=json.dumps(body) if body is not None else None, content_type="application/json"
                )
                allowed = user is not None and RANK[role_of(user, project)] >= RANK[least]
                passed = response.status_code not in REFUSED_API
                leak = (passed and not allowed and response.status_code < 500) or body_leaks(response, sees_b)
                TALLIES["API with a browser session"].add(
                    expected_ok=passed == allowed,
                    leak=leak,
                    status=response.status_code,
                    what=f"{username} session {method.upper()} {path} -> {response.status_code}",
                )


# --- Blind review --------------------------------------------------------------------------------------------


def run_blind_review(world: dict) -> None:
    """Reviewers must not read gold or colleagues' answers; leads and admins must."""
    from django.test import Client

    from api import services

    a = world["projects"]["A"]
    docs = world["docs"]["A"]
    secret = {docs["gold"].pk: "data_security", docs["overlap"].pk: "third_party"}
    for username in ("a-reviewer", "a-lead", "a-admin"):
        user = world["users"][username]
        blind = username == "a-reviewer"
        token = services.api_key_create(actor=user, projects=[a], name="blind", scopes=["read"]).token
        for client, how in ((Client(HTTP_AUTHORIZATION=f"Bearer {token}"), "key"), (Client(), "session")):
            if how == "session":
                client.force_login(user)
            base = f"/api/v1/projects/{a.pk}"
            for document_id, answer in secret.items():
                response = client.get(f"{base}/documents/{document_id}")
                sees = answer in response.json().get("labels", [])
                TALLIES["Blind review reads"].add(
                    expected_ok=sees != blind,
                    leak=blind and sees,
                    status=response.status_code,
                    what=f"{username} {how} documents/{document_id} -> {response.json().get('labels')}",
                )
                if how == "session":
                    page = client.get(f"/projects/{a.pk}/documents/{document_id}")
                    shown = page.status_code == 200 and (page.json()["document"]["suggestion"] is not None)
                    TALLIES["Blind review reads"].add(
                        expected_ok=not (blind and shown),
                        leak=blind and shown,
                        status=page.status_code,
                        what=f"{username} labeling page suggestion for {document_id}: {shown}",
                    )
                if document_id == docs["gold"].pk:
                    continue  # a gold answer is no annotation; the label filter never searched it
                filtered = client.get(f"{base}/documents?label={answer}")
                found = document_id in [d["id"] for d in filtered.json()["results"]]
                TALLIES["Blind review reads"].add(
                    expected_ok=found != blind,
                    leak=blind and found,
                    status=filtered.status_code,
                    what=f"{username} {how} documents?label={answer} -> {'found' if found else 'not found'}",
                )
            listing = client.get(f"{base}/documents").json()["results"]
            leaked = any(secret.get(d["id"]) in d["labels"] for d in listing if d["id"] in secret)
            TALLIES["Blind review reads"].add(
                expected_ok=leaked != blind, leak=blind and leaked, status=200, what=f"{username} {how} documents list"
            )
            annotations = client.get(f"{base}/annotations").json()["results"]
            others = [x for x in annotations if x["reviewer"] != user.username]
            TALLIES["Blind review reads"].add(
                expected_ok=bool(others) != blind,
                leak=blind and bool(others),
                status=200,
                what=f"{username} {how} annotations list ({len(others)} of others)",
            )


# --- Takeover paths (finding 1 and 9) -----------------------------------------------------------------------


def run_takeover(world: dict) -> None:
    import re

    from django.test import Client

    from annotation.models import Membership
    from api import services
    from api.models import ServiceAccount

    tally = TALLIES["Takeover paths across projects"]
    a, b = world["projects"]["A"], world["projects"]["B"]
    admin_b = Client()
    admin_b.force_login(world["users"]["b-admin"])
    admin_b.post(f"/projects/{b.pk}/manage/members/", {"identifier": "carol@b.example", "role": "reviewer"})
    svc = ServiceAccount.objects.get(project=b, name="intake-b").user
    admin_a = Client()
    admin_a.force_login(world["users"]["a-admin"])
    for identifier in (svc.username, "carol@b.example", "b-reviewer", "b-admin"):
        response = admin_a.post(f"/projects/{a.pk}/manage/members/", {"identifier": identifier, "role": "admin"})
        member = (
            Membership.objects.filter(project=a, user__username=identifier).first()
            or Membership.objects.filter(project=a, user__email=identifier).first()
        )
        joined_service = member is not None and hasattr(member.user, "service_account")
        tally.add(
            expected_ok=not joined_service,
            leak=joined_service,
            status=response.status_code,
            what=f"admin A adds {identifier}: {'member' if member else 'refused'}",
        )
        if member is None:
            continue
        response = admin_a.post(f"/projects/{a.pk}/manage/members/{member.pk}/password-link/", follow=True)
        links = re.findall(r"/accounts/set-password/[\w-]+/[\w-]+/", response.content.decode())
        tally.add(
            expected_ok=not links,
            leak=bool(links),
            status=response.status_code,
            what=f"admin A asks a password link for {identifier}: {len(links)} link(s)",
        )
        for link in links:
            form = Client().get(link, follow=True)
            Client().post(form.redirect_chain[-1][0], {"new_password1": "x-Attack-99", "new_password2": "x-Attack-99"})
        attacker = Client()
        response = attacker.post("/accounts/login/", {"username": member.user.username, "password": "x-Attack-99"})
        signed_in = "_auth_user_id" in attacker.session
        tally.add(
            expected_ok=not signed_in,
            leak=signed_in,
            status=response.status_code,
            what=f"sign in as {identifier} with the attacker's password: {signed_in}",
        )
        for path in (f"/projects/{b.pk}/manage/members/", f"/api/v1/projects/{b.pk}/annotations/export"):
            response = attacker.get(path)
            passed = response.status_code == 200
            tally.add(expected_ok=not passed, leak=passed, status=response.status_code, what=f"then GET {path}")
    # A service account signs in nowhere, even with a password set behind Docket's back.
    svc.set_password("pw-12345678")
    svc.save()
    for path in ("/accounts/login/", "/admin/login/"):
        client = Client()
        response = client.post(path, {"username": svc.username, "password": "pw-12345678"})
        signed_in = "_auth_user_id" in client.session
        tally.add(
            expected_ok=not signed_in,
            leak=signed_in,
            status=response.status_code,
            what=f"service account signs in at {path}: {signed_in}",
        )
    svc.set_unusable_password()
    svc.save()
    # Finding 9: A's admin issues a key under B's service-account name; it must act as A's own account.
    issued = services.api_key_create(
        actor=world["users"]["a-admin"], projects=[a], name="intake-b", scopes=["read"], kind="service"
    )
    same = issued.key.user_id == svc.pk
    tally.add(expected_ok=not same, leak=same, status=201, what="A's key named like B's service account")
    response = Client(HTTP_AUTHORIZATION=f"Bearer {issued.token}").get(f"/api/v1/projects/{b.pk}")
    tally.add(
        expected_ok=response.status_code == 404,
        leak=response.status_code == 200,
        status=response.status_code,
        what="that key on B",
    )


# --- Sign-in lockout and invalid keys --------------------------------------------------------------------------


def run_brute_force(world: dict) -> None:
    from django.conf import settings
    from django.core.cache import cache
    from django.test import Client

    tally = TALLIES["Password guessing and invalid keys"]
    cache.clear()
    for attempt in range(1, 11):
        response = Client(REMOTE_ADDR="10.9.9.9").post(
            "/accounts/login/", {"username": "a-reviewer", "password": f"guess-{attempt}"}
        )
        locked = response.status_code == 429
        should_lock = attempt >= settings.AXES_FAILURE_LIMIT
        tally.add(
            expected_ok=locked == should_lock,
            leak=False,
            status=response.status_code,
            what=f"wrong password {attempt}: {response.status_code}",
        )
    client = Client(REMOTE_ADDR="10.9.9.9")
    response = client.post("/accounts/login/", {"username": "a-reviewer", "password": "pw-12345678"})
    signed_in = "_auth_user_id" in client.session
    tally.add(
        expected_ok=not signed_in, leak=signed_in, status=response.status_code, what="right password while locked out"
    )
    settings.DOCKET_API_KEY_FAILURES = "20/min"
    bad = Client(REMOTE_ADDR="10.9.9.10", HTTP_AUTHORIZATION="Bearer dk_12345678_guessing-a-secret")
    for attempt in range(1, 41):
        response = bad.get("/api/v1/projects")
        tally.add(
            expected_ok=(response.status_code == 429) == (attempt > 20),
            leak=False,
            status=response.status_code,
            what=f"invalid key {attempt}: {response.status_code}",
        )
    settings.DOCKET_API_KEY_FAILURES = "1000000/min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    started = time.monotonic()
    prepare_database()
    configure_django(
        APP_URL,
        DOCKET_ARTIFACT_DIR=str(ARTIFACTS),
        DOCKET_API_RATE="1000000/min",
        DOCKET_API_KEY_FAILURES="1000000/min",
        CELERY_BROKER_URL="memory://",
        ALLOWED_HOSTS="testserver,127.0.0.1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    import logging

    logging.disable(logging.ERROR)  # refused requests log warnings by design; the tally counts them
    world = build_world()
    run_api(world)
    run_pages(world)
    run_blind_review(world)
    run_takeover(world)
    run_brute_force(world)
    seconds = time.monotonic() - started

    rows = sorted(TALLIES.items(), key=lambda item: -item[1].requests)
    total = Counter()
    print("| requests tried, by kind | requests | as expected | leaks | server errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind, tally in rows:
        print(f"| {kind} | {tally.requests} | {tally.as_expected} | {tally.leaks} | {tally.server_errors} |")
        total.update(
            requests=tally.requests, as_expected=tally.as_expected, leaks=tally.leaks, server_errors=tally.server_errors
        )
    print(
        f"| **all** | **{total['requests']}** | **{total['as_expected']}** | **{total['leaks']}** | "
        f"**{total['server_errors']}** |"
    )
    print(
        f"\n{len(world['keys'])} kinds of API caller; {seconds:.0f} s on {platform.node()}; "
        f"load average {open('/proc/loadavg').read().split()[:3]}"
    )
    for kind, tally in rows:
        for example in tally.leak_examples[:10]:
            print(f"LEAK [{kind}] {example}")
        for example in tally.surprises[:10]:
            print(f"unexpected [{kind}] {example}")
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps({k: vars(t) for k, t in TALLIES.items()}, indent=2))
    sys.exit(1 if total["leaks"] or total["server_errors"] else 0)


if __name__ == "__main__":
    main()
