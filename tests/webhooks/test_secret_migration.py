"""webhooks/0002: signing secrets stored in clear are encrypted under SECRET_KEY, and decrypted on the way back."""

import pytest
from django.db import connection

from tests.factories import project_with_labels
from tests.learning.test_priority_migration import latest, migrate
from webhooks.encryption import secret_decrypt

BEFORE = [("webhooks", "0001_initial")]
AFTER = [("webhooks", "0002_webhook_secret_encrypted")]


def stored_column(column: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM webhooks_webhook ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_clear_secrets_are_encrypted_and_decrypted_back():
    project = project_with_labels(name="Hooks before encryption")
    secrets = ["a" * 64, "b" * 64]
    apps = migrate(BEFORE)
    try:
        old = apps.get_model("webhooks", "Webhook")
        for secret in secrets:
            old.objects.create(project_id=project.pk, url="https://hooks.example.org/in", events=[], secret=secret)

        migrate(AFTER)
        tokens = stored_column("secret_token")
        assert all(secret not in token for secret, token in zip(secrets, tokens, strict=True))
        assert [secret_decrypt(token) for token in tokens] == [(secret, False) for secret in secrets]

        migrate(BEFORE)
        assert stored_column("secret") == secrets
    finally:
        migrate(latest())
