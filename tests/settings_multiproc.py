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
LOGGING = {"version": 1, "disable_existing_loggers": False}
