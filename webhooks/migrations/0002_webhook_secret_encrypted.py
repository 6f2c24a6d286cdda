# Stop-and-start upgrade: code before it signs deliveries with the stored column as it is (docs/deploy.md).
#
# Webhook signing secrets were stored in clear, so a database dump or backup could sign deliveries. The column
# becomes `secret_token`, a Fernet token under a key derived from SECRET_KEY (webhooks.encryption), wide enough
# for one; existing secrets are encrypted, and decrypted again on the way back. Migrate with the SECRET_KEY the
# installation runs with (the backwards step also accepts SECRET_KEY_FALLBACKS).

from django.db import migrations, models

from webhooks.encryption import secret_decrypt, secret_encrypt


def encrypt_secrets(apps, schema_editor):
    Webhook = apps.get_model("webhooks", "Webhook")
    db = schema_editor.connection.alias
    for hook in Webhook.objects.using(db).only("pk", "secret_token").order_by("pk"):
        hook.secret_token = secret_encrypt(hook.secret_token)
        hook.save(update_fields=["secret_token"])


def decrypt_secrets(apps, schema_editor):
    Webhook = apps.get_model("webhooks", "Webhook")
    db = schema_editor.connection.alias
    for hook in Webhook.objects.using(db).only("pk", "secret_token").order_by("pk"):
        hook.secret_token, _ = secret_decrypt(hook.secret_token)
        hook.save(update_fields=["secret_token"])


class Migration(migrations.Migration):
    dependencies = [("webhooks", "0001_initial")]

    operations = [
        migrations.RemoveConstraint(model_name="webhook", name="webhook_has_secret"),
        migrations.RenameField(model_name="webhook", old_name="secret", new_name="secret_token"),
        migrations.AlterField(model_name="webhook", name="secret_token", field=models.TextField()),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
        migrations.AddConstraint(
            model_name="webhook",
            constraint=models.CheckConstraint(
                condition=models.Q(("secret_token", ""), _negated=True), name="webhook_has_secret"
            ),
        ),
    ]
