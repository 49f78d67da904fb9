import pytest
from django.core.cache import caches

from blog.entrycache import entry_cache
from publishqueue.rendering import renderers, site_variables
from tests.fcgi import runfcgi  # noqa: F401 - fixture: a real runfcgi process
from tests.multiproc import cluster, pg_cluster  # noqa: F401 - fixtures for multi-process tests
from tests.nginx import nginx_for  # noqa: F401 - fixture: nginx in front of runfcgi
from tests.s3 import s3_server, s3_target  # noqa: F401 - fixtures: a real S3 server (rclone serve s3)
from tests.varnish import varnish  # noqa: F401 - fixture: Varnish in front of a static file server


@pytest.fixture(autouse=True)
def _fresh_render_caches():
    """Compiled engines and sidebars are per process; tests start from empty caches (the cached Dynamic pages
    too, and the workers' entries: two tests' sites may have the same id and versions)."""
    renderers.clear()
    site_variables.clear()
    entry_cache.clear()
    caches["default"].clear()
    yield
    renderers.clear()
    site_variables.clear()
    entry_cache.clear()
