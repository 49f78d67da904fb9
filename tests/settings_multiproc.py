"""Settings for worker subprocesses in multi-process tests: short leases, probed job handlers."""
import os

from tests.settings import *  # noqa: F403

DISPATCH = {"HEARTBEAT_SECONDS": 0.5}
PUBLISHQUEUE = {
    "SITE_ROOTS": SITE_ROOTS,  # noqa: F405
    "LEASE_SECONDS": float(os.environ.get("MTD_LEASE_SECONDS", "5")),
    "JOB_MAX_ATTEMPTS": int(os.environ.get("MTD_MAX_ATTEMPTS", "5")),
    "PERIODIC_CHECK_SECONDS": 3600,
    "JOB_HANDLERS": {
        "publish": "tests.probe.probed_publish", "noop": "tests.probe.probed_noop", "crash": "tests.probe.crash",
    },
}
# Object storage: with MTD_S3_ENDPOINT and MTD_S3_BUCKET (tests/s3.py's server), the publish target "s3".
if os.environ.get("MTD_S3_BUCKET"):
    from tests.s3 import ACCESS_KEY, SECRET_KEY

    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "published": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": os.environ["MTD_S3_BUCKET"], "endpoint_url": os.environ["MTD_S3_ENDPOINT"],
            "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "region_name": "us-east-1",
            "addressing_style": "path", "file_overwrite": True, "querystring_auth": False,
        }},
    }
    PUBLISHQUEUE["TARGETS"] = {"s3": {"BACKEND": "publishqueue.targets.StorageTarget", "STORAGE": "published"}}
LOGGING = {"version": 1, "disable_existing_loggers": False}
