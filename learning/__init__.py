"""The model side: `ml/` (plain Python: SetFit, query strategies, metrics) and its Django glue, model versions,
training runs, queue priorities and the Celery tasks; the rest reads it through learning/selectors.py."""
