# Each model version keeps how many of its training documents carry each label, so a rescore of the queue
# (after an import or a switch) weighs rare labels by the labels the serving model was trained on. Versions
# trained before keep an empty record and fall back on the pool's predicted prevalence.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("learning", "0007_queue_priority_keys_unchecked"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="train_label_counts",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
