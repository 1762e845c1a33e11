"""Settings for the whole project, read from the environment (and a `.env` file in development).

Every environment variable the project reads is read here, and documented in `.env.example`.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set to a real secret when DEBUG is off.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_celery_beat",
    "tasks",
    "crowdfund.accounts",
    "crowdfund.campaigns",
    "crowdfund.pledges",
    "crowdfund.payments",
    "crowdfund.notifications",
    "crowdfund.reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

# Database. Connections are kept open between requests and between tasks (see CELERY_DB_REUSE_MAX).
DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/crowdfund")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Fail fast when PostgreSQL is unreachable, so /health/ answers within seconds.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 3
    # The task platform's per-task statements ask to be prepared (tasks.services); Django turns
    # prepared statements off unless this is set, and then they are parsed and planned every time.
    # Django's own queries bind on the client and are never prepared. Off behind a pooler in
    # transaction mode that cannot keep them (PgBouncer before 1.21; see docs/operations.md).
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every start until collectstatic
# A relative MEDIA_ROOT is taken from the project folder; an absolute one as it is.
MEDIA_ROOT = BASE_DIR / env.str("MEDIA_ROOT", default="var/media")
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Production hardening; `manage.py check --deploy` is clean with DEBUG off.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^metrics$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG

# REST framework. Errors have one format (crowdfund.common.api); JSON only, in and out.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "crowdfund.common.pagination.Pagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "crowdfund.common.schema.AutoSchema",
    "EXCEPTION_HANDLER": "crowdfund.common.api.exception_handler",
    # Registration and sign-in, per client address, against password guessing and mass sign-ups.
    "DEFAULT_THROTTLE_RATES": {"auth": env.str("AUTH_THROTTLE_RATE", default="20/minute")},
    "COERCE_DECIMAL_TO_STRING": True,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Crowdfund API",
    "DESCRIPTION": (
        "The API the crowdfunding mobile app is built against. Authenticate with `Authorization: Bearer "
        "<access token>` (POST /api/v1/auth/token). Money is a decimal string with two places plus an ISO 4217 "
        "`currency`. Every error is `{code, detail, fields}`: `code` is stable and machine-readable, `detail` "
        'is for humans, `fields` maps a field name to its messages ("a.b" for nested fields, '
        '"non_field_errors" for the body as a whole).'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Several serializers have a `kind`; name the notification kinds' enum so it never collides.
    "ENUM_NAME_OVERRIDES": {
        "NotificationKindEnum": "crowdfund.notifications.models.NotificationKind",
        "ReportStatusEnum": "crowdfund.reports.models.ReportState",
    },
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=14)),
    "AUTH_HEADER_TYPES": ("Bearer",),
}

# Payments: the provider adapter pledges use (crowdfund.payments.providers).
PAYMENTS_PROVIDER = env.str("PAYMENTS_PROVIDER", default="sandbox")
# The sandbox provider signs its webhooks with this secret. Without DEBUG there is no default, and
# an unset secret refuses every sandbox webhook.
PAYMENTS_SANDBOX_WEBHOOK_SECRET = env.str(
    "PAYMENTS_SANDBOX_WEBHOOK_SECRET", default="whsec_sandbox_development_only" if DEBUG else ""
)
# Where the sandbox delivers its webhooks (this project's webhook endpoint).
PAYMENTS_SANDBOX_WEBHOOK_URL = env.str(
    "PAYMENTS_SANDBOX_WEBHOOK_URL", default="http://127.0.0.1:8000/api/v1/payments/webhooks/sandbox"
)
# Routes the sandbox's confirm endpoint; never in production.
PAYMENTS_SANDBOX_ENABLED = env.bool("PAYMENTS_SANDBOX_ENABLED", default=DEBUG)
# For testing: deliver each sandbox event this many extra times, each delivery delayed by a random
# 0..N seconds (so events overtake each other), and every sandbox API call slowed by N seconds.
PAYMENTS_SANDBOX_DUPLICATE_DELIVERIES = env.int("PAYMENTS_SANDBOX_DUPLICATE_DELIVERIES", default=0)
PAYMENTS_SANDBOX_MAX_DELIVERY_DELAY_SECONDS = env.float("PAYMENTS_SANDBOX_MAX_DELIVERY_DELAY_SECONDS", default=0.0)
PAYMENTS_SANDBOX_LATENCY_SECONDS = env.float("PAYMENTS_SANDBOX_LATENCY_SECONDS", default=0.0)
# Webhook bodies larger than this are refused (400) unread.
PAYMENTS_WEBHOOK_MAX_BODY_BYTES = env.int("PAYMENTS_WEBHOOK_MAX_BODY_BYTES", default=64 * 1024)
# Reconciliation: pledges pending longer than this are checked with the provider; intents never
# confirmed for longer than the second are cancelled and their pledges fail.
PAYMENTS_RECONCILE_AFTER_MINUTES = env.int("PAYMENTS_RECONCILE_AFTER_MINUTES", default=15)
PAYMENTS_INTENT_ABANDONED_AFTER_HOURS = env.int("PAYMENTS_INTENT_ABANDONED_AFTER_HOURS", default=24)
# Paid pledges refunded per task when a campaign fails.
PAYMENTS_REFUND_CHUNK_SIZE = env.int("PAYMENTS_REFUND_CHUNK_SIZE", default=100)

# Notifications (crowdfund.notifications). Email goes through Django's backend named by EMAIL_URL:
# consolemail:// (development), filemail:////abs/path, memorymail://, dummymail://, or smtp(s)://user:pass@host:port.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Crowdfund <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The domain of the Message-ID header of our mail (the host name, by default, costs a DNS lookup).
NOTIFICATIONS_EMAIL_DOMAIN = env.str("NOTIFICATIONS_EMAIL_DOMAIN", default="crowdfund.local")
# Where links in messages point (the unsubscribe link): the public address of this API.
NOTIFICATIONS_BASE_URL = env.str("NOTIFICATIONS_BASE_URL", default="http://localhost:8000")
# The key signing one-click unsubscribe links; changing it breaks the links already sent.
NOTIFICATIONS_UNSUBSCRIBE_KEY = env.str("NOTIFICATIONS_UNSUBSCRIBE_KEY", default="") or SECRET_KEY
# The push provider adapter (crowdfund.notifications.channels.push): "sandbox" records pushes in a table.
PUSH_PROVIDER = env.str("PUSH_PROVIDER", default="sandbox")
# Messages per second per provider, for all workers together ("email", "push:<provider>"); 0 = no limit.
NOTIFICATIONS_RATE_LIMITS = {
    "email": env.float("NOTIFICATIONS_EMAIL_RATE", default=50.0),
    f"push:{PUSH_PROVIDER}": env.float("NOTIFICATIONS_PUSH_RATE", default=500.0),
}
# How many seconds' worth of messages may go out in one burst after a quiet spell.
NOTIFICATIONS_RATE_BURST_SECONDS = env.float("NOTIFICATIONS_RATE_BURST_SECONDS", default=2.0)
# Recipients per fan-out chunk task.
NOTIFICATIONS_FANOUT_CHUNK_SIZE = env.int("NOTIFICATIONS_FANOUT_CHUNK_SIZE", default=500)

# Reports (crowdfund.reports). Files are deleted, and their reports marked expired, this many days
# after they are ready.
REPORTS_RETENTION_DAYS = env.int("REPORTS_RETENTION_DAYS", default=7)
# Reports one user may have pending or running at once; one more is refused with 429.
REPORTS_MAX_RUNNING_PER_USER = env.int("REPORTS_MAX_RUNNING_PER_USER", default=3)
# Seconds a report may take: at the soft limit it fails cleanly (state failed, temporary file
# removed); the hard limit kills the process. Below RabbitMQ's 30-minute consumer timeout.
REPORTS_SOFT_TIME_LIMIT = env.int("REPORTS_SOFT_TIME_LIMIT", default=20 * 60)
REPORTS_TIME_LIMIT = env.int("REPORTS_TIME_LIMIT", default=25 * 60)
# Rows fetched from the database (server-side cursor) and written per chunk.
REPORTS_CHUNK_SIZE = env.int("REPORTS_CHUNK_SIZE", default=5000)

# Celery. Queues and routes live in config/queues.py, the periodic schedule in config/schedule.py.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")
# "classic" or "quorum": the type of the task queues config/queues.py declares (quorum: replicated
# over a RabbitMQ cluster; switching needs the queues drained and deleted, see docs/operations.md).
CELERY_QUEUE_TYPE = env.str("CELERY_QUEUE_TYPE", default="classic")
# Without this, Celery's Django fix-up closes the database connection around every task (about
# 7 times slower for a task doing one insert); with it, a worker reuses its connection.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)
# Kept under RabbitMQ's 30-minute consumer timeout, so an acked-late task is never redelivered
# merely for running long.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=20 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=25 * 60)

# The task platform (tasks/).
TASKS_FINISHED_RETENTION_DAYS = env.int("TASKS_FINISHED_RETENTION_DAYS", default=30)
# The dispatcher (manage.py run_dispatcher) is woken by PostgreSQL notifications; it also passes
# over the ledger this often, for delays coming due and rows left while RabbitMQ was down.
TASKS_DISPATCH_POLL_SECONDS = env.float("TASKS_DISPATCH_POLL_SECONDS", default=5.0)
FLOWER_URL = env.str("FLOWER_URL", default="http://localhost:5555")
# Tables the domain adds to the task platform's dashboard (the platform never imports the domain).
TASKS_DASHBOARD_PANELS = ["crowdfund.campaigns.selectors.campaigns_closing_soon_panel"]
# RabbitMQ's management API, for queue depths on the dashboard and at /metrics; empty to read them
# with passive declares instead (ready messages only).
RABBITMQ_MANAGEMENT_URL = env.str("RABBITMQ_MANAGEMENT_URL", default="http://guest:guest@127.0.0.1:15672")

# Flower's login (basic auth), "user:password".
FLOWER_BASIC_AUTH = env.str("FLOWER_BASIC_AUTH", default="admin:admin" if DEBUG else "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Broker transport. On RabbitMQ every publish waits for the broker's confirm, so a message the
# broker did not take is never counted as sent; workers' monitoring events are the exception
# (tasks/consumer.py). The filesystem transport is the documented
# fallback for a machine without RabbitMQ (see README: make run).
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = BASE_DIR / "var" / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "control_folder": str(_broker_dir / "control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}

# Metrics (/metrics, Prometheus). Web and worker processes on one host write their samples to this
# folder, which /metrics merges (prometheus_client's multiprocess mode); emptied at stack start.
PROMETHEUS_MULTIPROC_DIR = str(BASE_DIR / env.str("PROMETHEUS_MULTIPROC_DIR", default="var/prometheus"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# When set, /metrics requires `Authorization: Bearer <token>`; production refuses to serve it
# without one (see docs/operations.md).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
