"""Settings for runfcgi processes under test: the project plus a few test views (tests/fcgi_urls.py)."""
from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.fcgi_urls"

try:  # a test writes this module into its directory to make newly started children fail to load
    import startup_hook  # noqa: F401
except ModuleNotFoundError:
    pass
DISPATCH = {"HEARTBEAT_SECONDS": 0.5}
PUBLISHQUEUE = {"PERIODIC_CHECK_SECONDS": 3600, "SITE_ROOTS": SITE_ROOTS}  # noqa: F405
