"""Settings for mtdispatch.

SQLite (WAL, BEGIN IMMEDIATE, busy timeout) is the default; set ``DATABASE_URL`` for PostgreSQL.
Every deployment knob is an environment variable so the same file serves the demo, the tests and
production.
"""
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MTDISPATCH_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-development-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "blog",
    "publishqueue",
    "dispatch",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # What a signed-in user's request publishes is theirs in the sites' activity logs.
    "publishqueue.activity.ActivityMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mtdispatch_project.urls"

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

WSGI_APPLICATION = "mtdispatch_project.wsgi.application"

SQLITE_PATH = Path(os.environ.get("MTDISPATCH_SQLITE", VAR_DIR / "db.sqlite3"))
SQLITE_OPTIONS = {
    # WAL lets readers (the site, the dashboard) run while a worker writes; IMMEDIATE takes the
    # write lock at BEGIN so two writers queue on the busy timeout instead of failing to upgrade.
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}
# SQLite connections are kept (per process and thread) instead of opened per request: a new one reads the whole
# schema at its first statement, 0.8-1.2 ms here, about half of what a Dynamic page served from its cache costs.
# Nothing is held between requests (autocommit: no open read snapshot); Django drops a connection after an error.
SQLITE_CONN_MAX_AGE = 600

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"].setdefault("OPTIONS", {}).update(SQLITE_OPTIONS)
        DATABASES["default"]["CONN_MAX_AGE"] = SQLITE_CONN_MAX_AGE
else:
    SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            "OPTIONS": SQLITE_OPTIONS,
            "CONN_MAX_AGE": SQLITE_CONN_MAX_AGE,
            "TEST": {"NAME": os.environ.get("MTDISPATCH_TEST_SQLITE") or None},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The install's language and time zone: the admin's, and every blog's that does not choose its own (a blog's
# language and time zone are active while its pages are rendered and its archive periods cut).
LANGUAGE_CODE = os.environ.get("MTDISPATCH_LANGUAGE", "en-us")
TIME_ZONE = os.environ.get("TZ_NAME", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

EMAIL_BACKEND = os.environ.get("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"}},
    "filters": {"no_traceback": {"()": "dispatch.logutil.NoTraceback"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "console_brief": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["no_traceback"]},
    },
    "loggers": {
        "mtdispatch": {"handlers": ["console"], "level": os.environ.get("MTDISPATCH_LOG_LEVEL", "INFO")},
        # Application errors (500s, with their tracebacks) to stderr, which is --errlog under runfcgi: without
        # this, Django logs them only to the console with DEBUG on, or mails ADMINS, and they were lost.
        "django": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # Bad Host headers and the like come from scanners: one line each, not a traceback.
        "django.security": {"handlers": ["console_brief"], "level": "ERROR", "propagate": False},
    },
}

# django-q2 uses the ORM broker on the same database; runworker runs its tasks (no separate qcluster).
Q_CLUSTER = {
    "name": "mtdispatch",
    "orm": "default",
    "workers": int(os.environ.get("Q_CLUSTER_WORKERS", "1")),
    "timeout": 120,
    "retry": 300,
    "max_attempts": 5,
    "catch_up": False,
}

# Where sites may be published (MT's BaseSitePath): never inside the project or its Python installation.
SITES_DIR = Path(os.environ.get("MTDISPATCH_SITES_DIR", Path.home() / ".local/share/mtdispatch/sites"))
SITE_ROOTS = [p for p in os.environ.get("MTDISPATCH_SITE_ROOTS", str(SITES_DIR)).split(os.pathsep) if p]

# The apps' settings namespaces; their defaults are in dispatch/conf.py, publishqueue/conf.py and blog/conf.py.
DISPATCH: dict = {}
PUBLISHQUEUE: dict = {"SITE_ROOTS": SITE_ROOTS}
# Object storage (publishqueue/targets.py): with MTDISPATCH_S3_BUCKET set, sites whose publish target is "s3"
# publish to that bucket through django-storages' S3Storage (credentials: boto3's, e.g. AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY; MTDISPATCH_S3_ENDPOINT for an S3-compatible server other than AWS).
if os.environ.get("MTDISPATCH_S3_BUCKET"):
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "published": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": os.environ["MTDISPATCH_S3_BUCKET"],
            "endpoint_url": os.environ.get("MTDISPATCH_S3_ENDPOINT") or None,
            "region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "addressing_style": "path" if os.environ.get("MTDISPATCH_S3_ENDPOINT") else None,
            "file_overwrite": True, "querystring_auth": False,
        }},
    }
    PUBLISHQUEUE["TARGETS"] = {"s3": {
        "BACKEND": "publishqueue.targets.StorageTarget", "STORAGE": "published",
        "CACHE_CONTROL": os.environ.get("MTDISPATCH_S3_CACHE_CONTROL", "public, max-age=300"),
    }}
BLOG: dict = {}
# The model that owns a site root, a site URL and templates (publishqueue.sites.AbstractSite).
PUBLISHQUEUE_SITE_MODEL = "blog.Blog"
