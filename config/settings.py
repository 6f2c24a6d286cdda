"""Docket settings. Everything comes from the environment; the defaults serve `make run` on one machine."""

import os
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Model weights ship inside a Python package; nothing may be fetched from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VAR_DIR = Path(env.str("DOCKET_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)
# Development (make run, tests) may fall back to a throwaway key; anything else must set SECRET_KEY.
DEVELOPMENT = env.bool("DOCKET_DEVELOPMENT", default=DEBUG)
if DEVELOPMENT:
    SECRET_KEY = env.str("SECRET_KEY", default="docket-development-only-key-not-for-production")
else:
    SECRET_KEY = env.str("SECRET_KEY")
# Earlier keys, newest first, while SECRET_KEY rotates: sessions, reset links and the webhook signing secrets
# encrypted under them stay readable (docs/security.md#webhook-signing-secrets).
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS. Off by default so `make run` works over plain HTTP; deploy/docket.env.example turns them on and
# `manage.py check --deploy` passes with it (tests/operations/test_production_settings.py).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Behind a proxy that ends TLS: trust its X-Forwarded-Proto, but only from the addresses in
# DOCKET_TRUSTED_PROXIES (operations.middleware.TrustedProxyMiddleware drops it from anyone else).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DOCKET_PROXY_SSL_HEADER", default=False) else None
)
DOCKET_TRUSTED_PROXIES = env.list("DOCKET_TRUSTED_PROXIES", default=["127.0.0.1", "::1"])
# /healthz and /readyz answer load balancers over plain HTTP, inside the network, without a redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_prometheus",
    "operations",
    "axes",
    "annotation",
    "learning",
    "quality",
    "api",
    "explore",
    "webhooks",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "operations.middleware.RequestIdMiddleware",
    "operations.middleware.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from the application itself: compressed, hashed names, cached for a year.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "annotation.middleware.AccessErrorMiddleware",
    "annotation.middleware.RefuseNulCharacters",
    # Late, as django-axes asks: it turns a locked-out sign-in into annotation.sign_in.locked_out's answer.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'docket.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded default: the web server and the worker's processes share one file. SQLite's default
    # (a rollback journal, transactions that take the write lock only at their first write) makes a
    # transaction that read first and then writes fail at once with "database is locked" whenever another
    # process writes meanwhile: waiting would deadlock, so SQLite does not wait. Hence:
    # - WAL: readers never block the writer, nor the writer readers; the mode is stored in the file.
    # - BEGIN IMMEDIATE for every transaction (Django's transaction_mode): a transaction takes the write lock
    #   when it starts, so writers queue up in the busy timeout instead of failing half-way.
    # - a busy timeout long enough to outlast any transaction Docket holds (imports write in chunks).
    # synchronous stays FULL: an answer the page was told is saved must survive a power cut.
    _sqlite = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite.setdefault("timeout", env.int("DOCKET_SQLITE_TIMEOUT", default=60))
    _sqlite.setdefault("transaction_mode", "IMMEDIATE")
    _sqlite.setdefault("init_command", "PRAGMA journal_mode=WAL")
    DATABASES["default"]["CONN_MAX_AGE"] = 0

# The statements a reviewer waits for are prepared on the server once per connection (annotation/statements.py).
# Off behind a pooler that shares server sessions between transactions (pgbouncer's transaction pooling).
DOCKET_PREPARED_STATEMENTS = env.bool("DOCKET_PREPARED_STATEMENTS", default=True)

# The role that owns the tables: `migrate` and `grant_app_role` run as it, the app never does (docs/security.md).
# The test suite creates its database as this role and then runs as DATABASE_URL's restricted role.
DATABASE_OWNER_URL = env.str("DATABASE_OWNER_URL", default="")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sign-in (annotation/sign_in.py): a locked-out username and address are refused first, then only people's
# passwords are checked; service accounts never sign in with a password.
AUTHENTICATION_BACKENDS = ["annotation.sign_in.SignInLockout", "annotation.sign_in.PeopleOnlyBackend"]
# After AXES_FAILURE_LIMIT failed sign-ins for one username from one address, that pair is refused for
# DOCKET_SIGN_IN_LOCKOUT_MINUTES; a superuser unlocks it sooner (Django admin, or `manage.py axes_reset_username`).
AXES_FAILURE_LIMIT = env.int("DOCKET_SIGN_IN_FAILURES", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("DOCKET_SIGN_IN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "annotation.sign_in.locked_out"
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production serves what `collectstatic` wrote, under hashed names WhiteNoise caches for a year; development
# and the test suite (DOCKET_DEVELOPMENT=1) serve the source files, so nothing needs collecting first.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEVELOPMENT
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEVELOPMENT

# "Forgot your password?" mails a reset link to the account's address (docs/deploy.md: EMAIL_URL).
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="docket@localhost")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotation:my-projects"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEVELOPMENT)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEVELOPMENT)

# Uploads are streamed to a temporary file, never held whole in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)

# --- Docket ---------------------------------------------------------------------------------------
# Models, training artifacts and embedding caches. Several workers on several machines must share it.
ARTIFACT_DIR = Path(env.str("DOCKET_ARTIFACT_DIR", default=str(VAR_DIR / "artifacts")))
# Longest document text accepted by imports and the API, in characters.
DOCKET_MAX_TEXT_CHARS = env.int("DOCKET_MAX_TEXT_CHARS", default=20_000)
# Rows per bulk insert during imports.
DOCKET_IMPORT_CHUNK = env.int("DOCKET_IMPORT_CHUNK", default=2_000)
# Webhooks (docs/admin-guide.md#webhooks): HTTPS only, except plain http to this machine in development and tests;
# private-network targets are refused unless allowed. A failed delivery is retried after RETRY_SECONDS, doubling.
DOCKET_WEBHOOK_ALLOW_HTTP_LOCAL = env.bool("DOCKET_WEBHOOK_ALLOW_HTTP_LOCAL", default=DEVELOPMENT)
DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=DEVELOPMENT)
DOCKET_WEBHOOK_RETRY_SECONDS = env.float("DOCKET_WEBHOOK_RETRY_SECONDS", default=30.0)
DOCKET_WEBHOOK_MAX_ATTEMPTS = env.int("DOCKET_WEBHOOK_MAX_ATTEMPTS", default=6)
DOCKET_WEBHOOK_TIMEOUT_SECONDS = env.float("DOCKET_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
DOCKET_WEBHOOK_LABELED_BATCH_SECONDS = env.float("DOCKET_WEBHOOK_LABELED_BATCH_SECONDS", default=10.0)
# Directory or name of the default SentenceTransformer body; empty means the packaged all-MiniLM-L6-v2.
DOCKET_BASE_MODEL = env.str("DOCKET_BASE_MODEL", default="")
# Cap on body fine-tuning steps in a slow run (~3 s a step on 2 CPU cores).
DOCKET_FINE_TUNE_MAX_STEPS = env.int("DOCKET_FINE_TUNE_MAX_STEPS", default=100)
# Recovery (docs/deploy.md, "When a worker dies"): long work (a training run, an import) writes a heartbeat
# every DOCKET_HEARTBEAT_SECONDS; every worker sweeps every DOCKET_SWEEP_SECONDS (0: never) and ends work
# whose heartbeat is older than DOCKET_STALE_SECONDS. A run interrupted that way, or by a dropped database
# connection, is started again until it has had DOCKET_TRAINING_MAX_ATTEMPTS attempts.
DOCKET_HEARTBEAT_SECONDS = env.float("DOCKET_HEARTBEAT_SECONDS", default=5.0)
DOCKET_SWEEP_SECONDS = env.float("DOCKET_SWEEP_SECONDS", default=5.0)
DOCKET_STALE_SECONDS = env.int("DOCKET_STALE_SECONDS", default=30)
DOCKET_TRAINING_MAX_ATTEMPTS = env.int("DOCKET_TRAINING_MAX_ATTEMPTS", default=3)

# --- Celery ---------------------------------------------------------------------------------------
# Default: Celery's file-system broker under var/, so `make run` runs a real worker with no server.
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("in", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "in"),
        "data_folder_out": str(_broker_dir / "in"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcast and reply queues (worker pings, remote control); kombu would put them in the cwd.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
_results_dir = VAR_DIR / "celery-results"
_results_dir.mkdir(parents=True, exist_ok=True)
# "django-db" keeps results in the project's database (PostgreSQL in production and tests).
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=f"file://{_results_dir}")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Body fine-tunes take minutes; give them their own queue (and worker) in production so imports and fast
# head refits never wait behind one. The default keeps everything on one queue for `make run`.
# Head refits and rescoring have a queue of their own too (DOCKET_FAST_QUEUE=fast), so they never wait behind
# an import either.
DOCKET_FAST_QUEUE = env.str("DOCKET_FAST_QUEUE", default="celery")
DOCKET_SLOW_TRAINING_QUEUE = env.str("DOCKET_SLOW_TRAINING_QUEUE", default="celery")
CELERY_TASK_ROUTES = {
    "learning.tasks.train_slow": {"queue": DOCKET_SLOW_TRAINING_QUEUE},
    "learning.tasks.train_fast": {"queue": DOCKET_FAST_QUEUE},
    "learning.tasks.labels_changed": {"queue": DOCKET_FAST_QUEUE},
    "learning.tasks.rescore_pool": {"queue": DOCKET_FAST_QUEUE},
    "learning.tasks.embed_shards": {"queue": env.str("DOCKET_EMBED_QUEUE", default="celery")},
}
# After a body fine-tune, the pool's re-embedding is cut into shards of this many documents, and the run sends
# this many helper tasks to other workers to encode shards beside it (PostgreSQL only; 0: it embeds alone).
DOCKET_EMBED_SHARD_SIZE = env.int("DOCKET_EMBED_SHARD_SIZE", default=2048)
DOCKET_EMBED_HELPERS = env.int("DOCKET_EMBED_HELPERS", default=1)
# Past this many documents to re-embed, a fine-tune leaves the work to Spark and waits (up to the hours below)
# for `manage.py import_embeddings` to bring the vectors (docs/scale.md); 0: the workers always embed.
DOCKET_REEMBED_ON_SPARK_ABOVE = env.int("DOCKET_REEMBED_ON_SPARK_ABOVE", default=0)
DOCKET_REEMBED_SPARK_WAIT_HOURS = env.float("DOCKET_REEMBED_SPARK_WAIT_HOURS", default=48.0)
# Task events for Flower and `celery events` (see docs/deploy.md).
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=True)
CELERY_TASK_SEND_SENT_EVENT = CELERY_WORKER_SEND_TASK_EVENTS
# Task results are kept this long; the scheduler (celery beat) deletes older ones every night.
CELERY_RESULT_EXPIRES = timedelta(days=env.int("DOCKET_TASK_RESULT_DAYS", default=7))
# RabbitMQ and Redis: a fine-tune that outlives the broker's patience would be delivered twice. With Redis the
# message comes back to the queue after this long unacknowledged; keep it longer than a fine-tune plus
# re-embedding (RabbitMQ's own consumer_timeout is set on the server, docs/deploy.md).
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("DOCKET_BROKER_VISIBILITY_TIMEOUT", default=4 * 3600)
    }
# A fine-tune saves its body this often (steps), so a restarted worker resumes near where it stopped.
DOCKET_FINE_TUNE_CHECKPOINT_STEPS = env.int("DOCKET_FINE_TUNE_CHECKPOINT_STEPS", default=10)
# Web processes load every project's active model when they start (config/wsgi.py), so no request pays it.
DOCKET_WARM_MODELS = env.bool("DOCKET_WARM_MODELS", default=True)
# ... and check this often for a newly promoted model, loading it before any request asks (0: never).
DOCKET_MODEL_POLL_SECONDS = env.int("DOCKET_MODEL_POLL_SECONDS", default=10)
# /metrics asks for `Authorization: Bearer <token>` when this is set (or block it at the proxy).
DOCKET_METRICS_TOKEN = env.str("DOCKET_METRICS_TOKEN", default="")

# --- REST framework -------------------------------------------------------------------------------
# Throttle counters live in this cache: local memory serves one process; several processes need Redis.
CACHES = {"default": env.cache_url("DOCKET_CACHE_URL", default="locmemcache://")}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    CACHES["default"]["BACKEND"] = "operations.cache.RedisCache"  # Django's, with one client per pool, not per call
# With a cache the web processes share (DOCKET_CACHE_URL=redis://...), sessions are read from it and written
# through to the database: one query less on every request of a reviewer's get-next + submit loop. A
# per-process memory cache would keep a logged-out session alive in the other processes, so without a shared
# cache sessions are read from the database.
SESSION_ENGINE = (
    "django.contrib.sessions.backends.db"
    if CACHES["default"]["BACKEND"].endswith("LocMemCache")
    else "django.contrib.sessions.backends.cached_db"
)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Keys first: an unauthenticated request then gets 401 with a WWW-Authenticate header, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["api.auth.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env.str("DOCKET_API_RATE", default="600/min")},
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    # JSON read with a nesting limit and no NUL characters (annotation/untrusted.py); nothing else is parsed.
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JsonBodyParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Docket API",
    "DESCRIPTION": (
        "Classify privacy texts with a project's active model and manage projects, documents and labels. "
        "Authenticate with `Authorization: Bearer <key>`; every error has the shape "
        '`{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.closed_request_bodies",
        "api.schema.complete_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "DocumentStatusEnum": "annotation.models.Document.Status",
        "KeyStatusEnum": ["active", "revoked", "expired"],
        "DocumentOutcomeEnum": ["created", "duplicate", "rejected"],
        "KeyKindEnum": "api.models.ApiKey.Kind",
        "ModelKindEnum": "learning.models.ModelVersion.Kind",
        "ModelStatusEnum": "learning.models.ModelVersion.Status",
        "TrainingRunStatusEnum": "learning.models.TrainingRun.Status",
    },
}
# Limits of one API request: texts per predict call, documents per bulk create, items per page.
# Invalid API keys one address may send per period before every key from it gets 429 for the rest of it.
DOCKET_API_KEY_FAILURES = env.str("DOCKET_API_KEY_FAILURES", default="20/min")
DOCKET_API_MAX_BATCH = env.int("DOCKET_API_MAX_BATCH", default=64)
DOCKET_API_MAX_DOCUMENTS = env.int("DOCKET_API_MAX_DOCUMENTS", default=500)
DOCKET_API_PAGE_SIZE = env.int("DOCKET_API_PAGE_SIZE", default=100)
# Explore's search by meaning is exact (a matrix product, well under 50 ms at 100,000 documents) below this many
# documents with embeddings, and asks the worker-built approximate index from here on (docs/explore.md).
DOCKET_ANN_MIN_DOCUMENTS = env.int("DOCKET_ANN_MIN_DOCUMENTS", default=1_000_000)

# One line per event with time, level, logger and the request's id (X-Request-ID, or made here); "json" gives
# one JSON object a line for a log shipper. Every request is logged once by docket.access.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "operations.logs.RequestIdFilter"}},
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {"()": "operations.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The access log says it once per request (docket.access); Django's own 4xx/5xx lines would repeat it.
        "django.request": {"level": "ERROR"},
        "docket.access": {"level": env.str("ACCESS_LOG_LEVEL", default="INFO")},
    },
}
