#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on 127.0.0.1, starting them when installed but stopped.
set -euo pipefail

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "Starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "Starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
echo "PostgreSQL and Redis are up"

# The suite runs as the app's restricted role (docs/security.md): docket_owner creates the test database and
# owns its tables, docket_app owns nothing and may only INSERT and SELECT on the audit log. Both are made here,
# idempotently; `grant_app_role` gives docket_app its privileges inside each test database.
psql -h 127.0.0.1 -U postgres -d postgres -q -v ON_ERROR_STOP=1 <<'SQL'
DO $$
BEGIN
    BEGIN
        CREATE ROLE docket_owner LOGIN CREATEDB NOSUPERUSER NOCREATEROLE PASSWORD 'docket_owner';
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE docket_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD 'docket_app';
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
END
$$;
ALTER ROLE docket_owner LOGIN CREATEDB NOSUPERUSER NOCREATEROLE;
ALTER ROLE docket_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS;
SELECT 'REVOKE docket_owner FROM docket_app' WHERE pg_has_role('docket_app', 'docket_owner', 'MEMBER') \gexec
SQL
# A test database left behind by an interrupted run of an older checkout may belong to another role; hand it
# to docket_owner so the next run can drop and recreate it.
test_db="test_${TEST_DB_NAME:-docket}"
psql -h 127.0.0.1 -U postgres -d postgres -q -v ON_ERROR_STOP=1 -v db="$test_db" <<'SQL'
SELECT format('ALTER DATABASE %I OWNER TO docket_owner', datname) FROM pg_database
WHERE datname = :'db' AND pg_get_userbyid(datdba) <> 'docket_owner' \gexec
SQL
echo "Database roles docket_owner and docket_app are ready"
