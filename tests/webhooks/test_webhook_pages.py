"""Registering webhooks: who may, which addresses, the secret shown once, and another project's hooks."""

import pytest
from django.urls import reverse

from annotation.exceptions import ProjectNotFound
from tests.factories import PASSWORD, MembershipFactory, UserFactory, project_with_labels
from webhooks.models import Delivery, Webhook
from webhooks.services import WebhookRejected, signature, webhook_create, webhook_target_check

pytestmark = pytest.mark.django_db


@pytest.fixture
def office():
    project = project_with_labels(name="Office")
    admin, reviewer = UserFactory(username="office-admin"), UserFactory(username="office-reviewer")
    MembershipFactory(project=project, user=admin, role="admin")
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    return project, admin, reviewer


def test_admin_registers_a_hook_and_sees_its_secret_once(client, office):
    project, admin, _ = office
    client.login(username=admin.username, password=PASSWORD)
    url = reverse("webhooks:page", args=[project.pk])

    created = client.post(url, {"url": "http://127.0.0.1:8301/in", "events": ["model.promoted", "taxonomy.changed"]})

    webhook = Webhook.objects.get(project=project)
    assert created.status_code == 200
    assert webhook.signing_secret() in created.content.decode()
    assert webhook.events == ["model.promoted", "taxonomy.changed"]
    assert webhook.signing_secret() not in client.get(url).content.decode()


def test_reviewer_may_not_open_or_change_webhooks(client, office):
    project, _, reviewer = office
    client.login(username=reviewer.username, password=PASSWORD)
    assert client.get(reverse("webhooks:page", args=[project.pk])).status_code == 403
    response = client.post(
        reverse("webhooks:page", args=[project.pk]), {"url": "https://hooks.example", "events": ["labels.exported"]}
    )
    assert response.status_code == 403 and not Webhook.objects.exists()


def test_another_projects_admin_cannot_reach_its_hooks_or_deliveries(client, office):
    project, admin, _ = office
    hook = webhook_create(
        project=project, actor=admin, url="http://127.0.0.1:8302/in", events=["labels.exported"]
    ).webhook
    delivery = Delivery.objects.create(webhook=hook, event="labels.exported", payload={"data": {}})
    other = project_with_labels(name="Other office")
    outsider = UserFactory(username="other-admin")
    MembershipFactory(project=other, user=outsider, role="admin")
    client.login(username=outsider.username, password=PASSWORD)

    assert client.get(reverse("webhooks:page", args=[project.pk])).status_code == 404
    for name, args in [
        ("webhooks:delete", [other.pk, hook.pk]),
        ("webhooks:ping", [other.pk, hook.pk]),
        ("webhooks:replay", [other.pk, delivery.pk]),
    ]:
        assert client.post(reverse(name, args=args)).status_code == 404
    assert Webhook.objects.filter(pk=hook.pk).exists() and Delivery.objects.count() == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8303/in",
        "http://hooks.example.org/in",
        "https://10.1.2.3/in",
        "https://127.0.0.1/in",
        "https://[::1]/in",
        "ftp://hooks.example.org/",
    ],
)
def test_production_refuses_plain_http_and_private_networks(settings, url):
    settings.DOCKET_WEBHOOK_ALLOW_HTTP_LOCAL = False
    settings.DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(WebhookRejected):
        webhook_target_check(url)


def test_an_operator_may_allow_private_networks_over_https(settings):
    settings.DOCKET_WEBHOOK_ALLOW_HTTP_LOCAL = False
    settings.DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    webhook_target_check("https://10.1.2.3/in")
    with pytest.raises(WebhookRejected):
        webhook_target_check("http://10.1.2.3/in")


def test_development_allows_plain_http_to_this_machine_only(settings):
    settings.DOCKET_WEBHOOK_ALLOW_HTTP_LOCAL = True
    webhook_target_check("http://127.0.0.1:8304/in")
    with pytest.raises(WebhookRejected):
        webhook_target_check("http://hooks.example.org/in")


def test_signature_is_hmac_sha256_of_time_and_body():
    assert signature("s3cret", 1700000000, b'{"a":1}') == (
        "t=1700000000,v1=" + __import__("hmac").new(b"s3cret", b'1700000000.{"a":1}', "sha256").hexdigest()
    )


def test_webhook_lookups_stay_inside_the_project(office):
    from webhooks.selectors import webhook_in

    project, admin, _ = office
    hook = webhook_create(
        project=project, actor=admin, url="http://127.0.0.1:8305/in", events=["labels.exported"]
    ).webhook
    with pytest.raises(ProjectNotFound):
        webhook_in(project_with_labels(name="Elsewhere"), hook.pk)
