"""A service account belongs to one project: its name is unique there only and its keys act only there.

Existing accounts are placed in the project of their earliest membership.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def place(apps, schema_editor):
    ServiceAccount = apps.get_model("api", "ServiceAccount")
    Membership = apps.get_model("annotation", "Membership")
    for account in ServiceAccount.objects.all():
        first = Membership.objects.filter(user_id=account.user_id).order_by("created_at", "id").first()
        if first is not None:
            account.project_id = first.project_id
            account.save(update_fields=["project"])


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0001_initial'),
        ('api', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='serviceaccount',
            name='project',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='service_accounts', to='annotation.project'),
        ),
        migrations.RunPython(place, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='serviceaccount',
            name='name',
            field=models.SlugField(max_length=100),
        ),
        migrations.AddConstraint(
            model_name='serviceaccount',
            constraint=models.UniqueConstraint(fields=('project', 'name'), name='service_account_name_unique_in_project'),
        ),
    ]
