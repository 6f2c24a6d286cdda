# Fast and slow training runs get a lane each. Old code runs safely on this schema during a rolling upgrade:
# it never creates more concurrent runs than the new indexes allow.

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0006_lead_reviewer_role'),
        ('learning', '0004_model_version_pruned_at'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='trainingrun',
            name='training_run_one_running',
        ),
        migrations.RemoveConstraint(
            model_name='trainingrun',
            name='training_run_one_queued',
        ),
        migrations.AddConstraint(
            model_name='trainingrun',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'running')), fields=('project', 'kind'), name='training_run_one_running_per_kind'),
        ),
        migrations.AddConstraint(
            model_name='trainingrun',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'queued')), fields=('project', 'kind'), name='training_run_one_queued_per_kind'),
        ),
    ]
