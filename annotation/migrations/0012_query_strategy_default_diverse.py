# New projects start with the diverse strategy: it beat margin (the old default) and random on unseen OPP-115
# policies under policy-grouped cross-validation (docs/benchmarks.md, issue 15). Existing projects keep the
# strategy they have: an admin may have chosen it.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0011_audit_keeps_project_and_actor"),
    ]

    operations = [
        migrations.AlterField(
            model_name="project",
            name="query_strategy",
            field=models.CharField(
                choices=[
                    ("least_confident", "Least confident"),
                    ("margin", "Margin"),
                    ("entropy", "Entropy"),
                    ("batch", "Ranked batch (modAL)"),
                    ("diverse", "Diverse uncertainty (best on OPP-115)"),
                    ("rare_margin", "Margin, favouring rare labels"),
                    ("random", "Random (baseline)"),
                ],
                default="diverse",
                max_length=32,
            ),
        ),
    ]
