"""riskdesk settings, read from the environment (django-environ).

Every variable is listed in `.env.example` with its default and meaning.
The embedded defaults need no server: SQLite, the in-memory channel layer,
the local-memory cache and Celery on kombu's filesystem transport. Setting
`DATABASE_URL` and `REDIS_URL` switches to MySQL/MariaDB and Redis.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env file beside manage.py is optional; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("RISKDESK_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _required(name: str, dev_default: str) -> str:
    """A secret that production must set; DEBUG alone may fall back to a dev value."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. Set it in the environment or in .env "
        f"(see .env.example), or set DEBUG=true for a throwaway development run."
    )


SECRET_KEY = _required("SECRET_KEY", "dev-only-insecure-secret-key-do-not-use-in-production")
# Fernet keys (comma-separated, newest first) that encrypt exchange API keys at rest.
FIELD_ENCRYPTION_KEYS = [
    k.strip()
    for k in _required("FIELD_ENCRYPTION_KEY", "ZGV2LW9ubHktaW5zZWN1cmUta2V5LTMyLWJ5dGVzISE=").split(",")
    if k.strip()
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework_simplejwt",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from /static/: the docs work offline
    "simple_history",
    "axes",  # failed sign-ins: lockout and cool-off (accounts/lockout.py)
    "csp",
    "django_celery_beat",  # report schedules edited in the admin (docs/REPORTS.md)
    "accounts",
    "marketdata",
    "positions",
    "rules",
    "alerts",
]

MIDDLEWARE = [
    "riskdesk.request_id.RequestIdMiddleware",  # first: every later line of the request carries its id
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "riskdesk.security.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "riskdesk.middleware.UserTimezoneMiddleware",
    # Last: turns a sign-in that axes refused into the lockout answer (accounts/lockout.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "riskdesk.urls"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "desk_login"  # the desk's own sign-in page; the admin keeps /admin/login/
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "desk_login"

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

ASGI_APPLICATION = "riskdesk.asgi.application"

# --- Database -------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'riskdesk.sqlite3'}")}
# WAL lets the web, worker and stream processes read while one of them writes. IMMEDIATE: a
# transaction takes the write lock when it begins, waiting up to `timeout` for it. Deferred (the
# default), one that read first and then wrote after another connection had committed failed at
# once with "database is locked" (the alert writer in the demo): the busy timeout does not apply.
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "charset": "utf8mb4",
            # Strict mode: MySQL must refuse a truncated Decimal, never round it silently.
            "init_command": "SET sql_mode='STRICT_TRANS_TABLES', innodb_strict_mode=1",
            "isolation_level": "read committed",
        }
    )
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    # 0: uvicorn runs each sync view in a fresh thread, and persistent connections per thread pile up
    # until MySQL refuses more ("Too many connections", seen under the gate benchmark).
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(SQLITE_OPTIONS)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, broker -----------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # riskdesk/redis_clients.py: one retry on a dead pooled connection, health checks, a short connect
    # timeout (issue 14: the first check and socket after a Redis restart failed), socket_timeout=None
    # and capacity for the channel layer (why: there).
    from riskdesk.redis_clients import cache_config, channel_layer_config

    CHANNEL_LAYERS = {"default": channel_layer_config(REDIS_URL)}
    CACHES = {"default": cache_config(REDIS_URL)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A file cache, not local memory: the web, worker and stream processes must see one another's entries.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- Celery ----------------------------------------------------------------
# Embedded default: kombu's filesystem transport, so a worker and beat run with no broker server.
CELERY_FS_DIR = VAR_DIR / "celery"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("out", "processed", "control"):
        (CELERY_FS_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_FS_DIR / "out"),
        "data_folder_out": str(CELERY_FS_DIR / "out"),
        "processed_folder": str(CELERY_FS_DIR / "processed"),
        "control_folder": str(CELERY_FS_DIR / "control"),  # else kombu writes ./control in the working dir
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the message for another worker
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"
# Schedules live in the database (django-celery-beat, riskdesk/beat.py): risk managers edit the report schedules in
# the admin; the fixed jobs of riskdesk/celery.py are copied in at beat's start.
CELERY_BEAT_SCHEDULER = "riskdesk.beat:DeskScheduler"

# --- Auth, API -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "riskdesk.schema.AutoSchema",
    # Money travels as strings so no client parses it into a float by accident.
    "COERCE_DECIMAL_TO_STRING": True,
    # Bounded pages (riskdesk/drf.py): a limit past max_limit is a 400 that names it.
    "DEFAULT_PAGINATION_CLASS": "riskdesk.drf.Pagination",
    "PAGE_SIZE": 100,
    # The API speaks JSON only (forms and multipart were never used, yet the schema offered them);
    # the strict parser turns JSON nested too deeply into a 400 instead of a RecursionError 500.
    "DEFAULT_PARSER_CLASSES": ["riskdesk.drf.StrictJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=1)),
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
}
# /health's details (which server is down and why, heartbeats, feeds) for a monitor that sends
# this in X-Health-Token; staff see them signed in. Anyone else gets only up or down.
HEALTH_TOKEN = env.str("HEALTH_TOKEN", default="")
SPECTACULAR_SETTINGS = {
    "TITLE": "riskdesk API",
    "DESCRIPTION": "Risk desk for Binance USDⓈ-M perpetual futures. Money and quantities are decimal strings.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files, not a CDN: the docs work offline
    # and under the Content-Security-Policy (riskdesk/schema.py documents refusals, drops docstrings).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "riskdesk.schema.add_refusals",
    ],
}

# --- i18n ------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# The trading day that daily loss and daily order caps reset on.
TRADING_DAY_TZ = env.str("TRADING_DAY_TZ", default="UTC")

# --- Static ----------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# The demo serves static files from the ASGI app itself; production puts nginx in front.
SERVE_STATIC = env.bool("SERVE_STATIC", default=True)

# --- Exchange ----------------------------------------------------------------------
BINANCE_FUTURES_REST_URL = env.str("BINANCE_FUTURES_REST_URL", default="https://fapi.binance.com")
BINANCE_FUTURES_WS_URL = env.str("BINANCE_FUTURES_WS_URL", default="wss://fstream.binance.com")
STREAM_STALE_AFTER_S = env.float("STREAM_STALE_AFTER_S", default=5.0)
# The dead-man switch (marketdata/deadman.py): countdownCancelAll per symbol with open orders, renewed
# while the desk sees the account; 0 turns it off. Its REST weight is bounded (10 a call).
DEADMAN_COUNTDOWN_S = env.float("DEADMAN_COUNTDOWN_S", default=60.0)
DEADMAN_RENEW_S = env.float("DEADMAN_RENEW_S", default=20.0)
DEADMAN_WEIGHT_PER_MIN = env.int("DEADMAN_WEIGHT_PER_MIN", default=600)
# Run the stream engine inside the web process (embedded demo: the in-memory channel layer
# does not cross processes). Production runs `manage.py run_streams` on its own and sets false.
STREAMS_IN_PROCESS = env.bool("STREAMS_IN_PROCESS", default=False)
# run_streams hands the live state and persistence to a child process of its own, so their work
# does not share the stream process's GIL with market frames and alerts (bench/alerts.py). Only
# where a child reaches the same cache: with Redis, not the embedded in-memory one.
STREAM_SINK_PROCESS = env.bool("STREAM_SINK_PROCESS", default=bool(REDIS_URL))
# An unacknowledged critical becomes an emergency after this long. Ten minutes, the subject budget's
# window (alerts/outbox.py: 2 messages per (account, rule, subject) and channel in 10 minutes): the
# escalation then never makes a third message inside one window (the demo's crash sent 3 at 300 s).
ALERT_ESCALATE_AFTER_S = env.int("ALERT_ESCALATE_AFTER_S", default=600)
# A breach that clears and comes back within this many seconds re-opens the same alert row
# (reopen_count) instead of paging again for the same level. A profile's reopen_window_s overrides it.
ALERT_REOPEN_WINDOW_S = env.int("ALERT_REOPEN_WINDOW_S", default=600)
# Channels hear of a warning or critical about a position this long after it is raised, so a
# liquidation arriving milliseconds later silences it (alerts/outbox.py _settle_s). Pages: at once.
ALERT_POSITION_SETTLE_S = env.float("ALERT_POSITION_SETTLE_S", default=1.0)
# An open alert's value is refreshed (quietly) at most this often per row.
ALERT_VALUE_REFRESH_S = env.float("ALERT_VALUE_REFRESH_S", default=5.0)
# Highest leverage a profile may allow when no bracket table says otherwise (Binance's top tier).
EXCHANGE_MAX_LEVERAGE = env.int("EXCHANGE_MAX_LEVERAGE", default=125)
# The account risk score's weights (rules/score.py, docs/RISK_LOGIC.md "Risk score"): one number per
# part, e.g. RISK_SCORE_WEIGHTS=margin_ratio=30,liq_distance=20,leverage=15,concentration=10,drawdown=15,anomalies=10
RISK_SCORE_WEIGHTS = {
    k: float(v) for k, v in env.dict("RISK_SCORE_WEIGHTS", default={}).items()
} or None  # None: rules.score.DEFAULT_WEIGHTS
# Desk-wide concentration: one symbol's share of every account's gross notional (rules/concentration.py).
DESK_CONCENTRATION_WARNING = env.str("DESK_CONCENTRATION_WARNING", default="0.5")
DESK_CONCENTRATION_CRITICAL = env.str("DESK_CONCENTRATION_CRITICAL", default="0.7")
DESK_CONCENTRATION_EVERY_S = env.float("DESK_CONCENTRATION_EVERY_S", default=30.0)

# --- Security --------------------------------------------------------------------
# Behind nginx (docker-compose.yml), which terminates TLS and says so in X-Forwarded-Proto.
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
# Served over HTTPS: plain HTTP is redirected and browsers are told to use HTTPS only (HSTS). On by
# default behind the proxy; the embedded demo on http://127.0.0.1 has no TLS, so not there.
HTTPS = env.bool("HTTPS", default=BEHIND_PROXY)
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^health$"]  # the containers' health checks call the web process over HTTP
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)  # preloading is a one-way door
# check --deploy's "no HSTS preload" (W021): preload is the operator's deliberate choice, hard to undo.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Cookies: Secure unless DEBUG (browsers accept Secure cookies from http://127.0.0.1 and localhost,
# so the demo still signs in); never readable by scripts (the desk's forms carry the CSRF token).
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # Strict would drop the session on a link into the desk from a page or mail
CSRF_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = int(env.float("SESSION_HOURS", default=12) * 3600)  # a trading day, then sign in again
# No inline script or style anywhere (templates/** load static/desk/*.js and *.css): an injected
# <script> or style="" does not run. connect-src 'self' covers the desk's same-origin WebSocket.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Brute force (django-axes): LOGIN_FAILURE_LIMIT wrong passwords for one login from one address lock
# that pair out for LOGIN_COOLOFF_MINUTES, on /login/, /admin/login/ and /api/v1/auth/token/ alike.
# Per login and address, so an attacker cannot lock a trader out from elsewhere. The database handler,
# not the cache: sign-in keeps working, and counting, with Redis down.
AUTHENTICATION_BACKENDS = [
    "accounts.lockout.LoginAttemptsBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_USERNAME_FORM_FIELD = "username"
# Token endpoints: at most this many requests per client address (DRF throttle), on top of the lockout.
AUTH_TOKEN_RATE = env.str("AUTH_TOKEN_RATE", default="20/min")
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"auth_token": AUTH_TOKEN_RATE}

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="riskdesk@localhost")

# --- Archive (positions/archive/, docs/ARCHIVE.md) ---------------------------------
# Where verified Parquet files go: a directory (default VAR_DIR/archive) or
# s3://bucket/prefix?endpoint_url=http://minio:9000 (django-storages; AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).
ARCHIVE_URL = env.str("ARCHIVE_URL", default="")
# Days each table stays hot in the database; the admin's archive policies override these.
ARCHIVE_RETENTION_DAYS = {
    "orderlog": env.int("ARCHIVE_ORDERLOG_DAYS", default=7),
    "tickerhistory": env.int("ARCHIVE_TICKERS_DAYS", default=30),
    "accountsnapshot": env.int("ARCHIVE_SNAPSHOTS_DAYS", default=30),
    "alert": env.int("ARCHIVE_ALERTS_DAYS", default=180),
    "delivery": env.int("ARCHIVE_ALERTS_DAYS", default=180),
    "riskaction": env.int("ARCHIVE_ALERTS_DAYS", default=180),
    "fill": env.int("ARCHIVE_FILLS_DAYS", default=180),
    "fundingfee": env.int("ARCHIVE_FILLS_DAYS", default=180),
    "closedposition": env.int("ARCHIVE_FILLS_DAYS", default=180),
}

# --- Operations ------------------------------------------------------------------
# Log lines: "json" (one object per line with the request id, for a log shipper) or "plain".
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
# /metrics answers "Authorization: Bearer <METRICS_TOKEN>" (Prometheus) or a signed-in staff user.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "riskdesk.logging.RedactSecretsFilter"},
        "request_id": {"()": "riskdesk.logging.RequestIdFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "riskdesk.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact", "request_id"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- h18c --- portfolio risk and the allocation adviser (rules/allocation/, docs/ALLOCATION.md)
# Days of 1-minute bars behind the historical VaR (daily returns); fewer than the minimum is "not available".
ALLOCATION_HISTORY_DAYS = env.int("ALLOCATION_HISTORY_DAYS", default=90)
ALLOCATION_MIN_HISTORY_DAYS = env.int("ALLOCATION_MIN_HISTORY_DAYS", default=20)
# The adviser's defaults: daily 99 % VaR budgets as percent of equity, and the capital split method.
ALLOCATION_DESK_BUDGET_PCT = env.str("ALLOCATION_DESK_BUDGET_PCT", default="2")
ALLOCATION_ACCOUNT_BUDGET_PCT = env.str("ALLOCATION_ACCOUNT_BUDGET_PCT", default="4")
ALLOCATION_METHOD = env.str("ALLOCATION_METHOD", default="risk_parity")
# A cached result older than this is recomputed when a page or the API asks (the beat job refreshes it sooner).
ALLOCATION_MAX_AGE_S = env.int("ALLOCATION_MAX_AGE_S", default=900)
# The demo only: the bar history ends here instead of now (ISO 8601 with zone, e.g. 2021-05-19T00:00:00+00:00).
ALLOCATION_HISTORY_END = env.str("ALLOCATION_HISTORY_END", default="")
if ALLOCATION_METHOD not in ("risk_parity", "inverse_vol"):
    raise ImproperlyConfigured(f"ALLOCATION_METHOD must be risk_parity or inverse_vol, not {ALLOCATION_METHOD!r}")

# --- h16 --- archive compaction (positions/archive/services.py, docs/ARCHIVE.md)
# Rows per compacted file: a finished day's small parts are rewritten as files of about this many rows.
ARCHIVE_COMPACT_ROWS = env.int("ARCHIVE_COMPACT_ROWS", default=1_000_000)

# --- the leaner gate (issue 19, docs/GATE_LANE.md) ---
# The order gate's event-loop Redis client: the lean hiredis client (one pipelined connection per
# loop) when true; redis.asyncio's client as before when false.
GATE_LEAN_REDIS = env.bool("GATE_LEAN_REDIS", default=True)
