# The queue index gains `id`, the tiebreak of the unscored route's ORDER BY random_key, id. Without it PostgreSQL
# reads the index in random_key order and sorts (an incremental sort, which takes at least 32 rows per batch), so
# every get-next read and checked 30-odd documents (their leases and skips too) to serve one. The new index is
# built before the old one goes, so the queue always has one.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("annotation", "0018_document_search_side_table")]

    operations = [
        migrations.AddIndex(
            model_name="document",
            index=models.Index(fields=["project", "status", "random_key", "id"], name="document_queue_order_idx"),
        ),
        migrations.RemoveIndex(model_name="document", name="document_queue_idx"),
    ]
