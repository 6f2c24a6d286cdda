"""Invitations: which accounts a project admin's invitation created, so only that admin may send them a password
link. Backfilled from the audit log, which has recorded every account created by an invitation."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def backfill(apps, schema_editor):
    AuditEvent = apps.get_model("annotation", "AuditEvent")
    Invitation = apps.get_model("annotation", "Invitation")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    events = AuditEvent.objects.filter(action="membership.created", project__isnull=False).order_by("created_at", "id")
    for event in events.iterator():
        after = event.after if isinstance(event.after, dict) else {}
        if not after.get("new_account") or not after.get("user"):
            continue
        user = User.objects.filter(username=after["user"]).first()
        if user is None or Invitation.objects.filter(user=user).exists():
            continue
        Invitation.objects.create(user=user, project_id=event.project_id, invited_by_id=event.actor_id)


def forget(apps, schema_editor):
    apps.get_model("annotation", "Invitation").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0006_lead_reviewer_role'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Invitation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('invited_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.project')),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='invitation', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.RunPython(backfill, forget),
    ]
