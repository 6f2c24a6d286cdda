"""manage.py rotate_webhook_secrets: after SECRET_KEY changed, store every webhook signing secret under it."""

from django.core.management.base import BaseCommand, CommandError

from webhooks.services import webhook_secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt webhook signing secrets written under a key in SECRET_KEY_FALLBACKS with SECRET_KEY. Run it "
        "after rotating SECRET_KEY and before removing the old key from SECRET_KEY_FALLBACKS (docs/security.md)."
    )

    def handle(self, *args, **options):
        result = webhook_secrets_rotate()
        self.stdout.write(
            f"Webhook signing secrets: {result.rotated} re-encrypted with SECRET_KEY, {result.current} already were."
        )
        if result.unreadable:
            ids = ", ".join(str(pk) for pk in result.unreadable)
            raise CommandError(
                f"{len(result.unreadable)} webhook(s) ({ids}) have a secret no configured key decrypts: put the key "
                "they were stored under in SECRET_KEY_FALLBACKS and run this again, or delete and register them anew."
            )
