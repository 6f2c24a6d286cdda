"""What every benchmark does before measuring: its own PostgreSQL database, and Django pointed at it.

Imported by the scripts beside it (`python benchmarks/<name>.py` puts this folder on the path).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def recreate_database(database: str) -> None:
    """Drop and create a benchmark's own database (a name, or a URL ending in it). Any name without 'bench' in
    it is refused, so a mistyped URL never drops real data."""
    name = database.rsplit("/", 1)[-1]
    if "bench" not in name:
        sys.exit(f"Refusing to drop {name!r}: the benchmark database's name must contain 'bench'.")
    for sql in (f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'):
        subprocess.run(["psql", "-h", HOST, "-U", "postgres", "-q", "-c", sql], check=True)


def configure_django(database_url: str, **environment: str) -> None:
    """Django on `database_url` with development settings, quiet logs and a broker of the benchmarks' own;
    `environment` adds or overrides variables."""
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "DOCKET_DEVELOPMENT": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "LOG_LEVEL": "WARNING",
            "DOCKET_VAR_DIR": str(ROOT / "var" / "bench"),
            "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"),
            **environment,
        }
    )
    import django

    django.setup()


def result_write(result: dict, path: Path | None) -> None:
    """Print a benchmark's result as JSON, with the load average it ended under, and write it to `path` if given."""
    import json

    result["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def cpu_seconds(pids: set[int]) -> dict[int, float]:
    """user + system CPU seconds of each process still alive (from /proc; the processes on this machine)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone, or not readable by this user
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def backend_cpu() -> tuple[int, float]:
    """The PostgreSQL server process behind Django's connection, and the CPU seconds it has used so far (nan
    when the server is on another machine or its process is not readable)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return pid, cpu_seconds({pid}).get(pid, float("nan"))
