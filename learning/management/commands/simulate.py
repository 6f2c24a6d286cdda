"""python manage.py simulate --data FILE.jsonl --strategy margin --strategy random [--seeds 3] --out DIR

A thin wrapper: the simulation itself is plain Python in learning.ml.simulation (also run by
benchmarks/simulate_opp115.py), so it can be run and tested without Django.
"""

from django.core.management.base import BaseCommand

from learning.ml.simulation import add_simulation_arguments, config_from_arguments, run_simulation


class Command(BaseCommand):
    help = "Simulate active learning on a labelled JSONL file: learning curves per query strategy against random."

    def add_arguments(self, parser):
        add_simulation_arguments(parser)

    def handle(self, *args, **options):
        result = run_simulation(config_from_arguments(options))
        self.stdout.write(result.summary_markdown)
        self.stdout.write(self.style.SUCCESS(f"Wrote curves.csv, learning_curves.png and summary.* to {result.out}"))
