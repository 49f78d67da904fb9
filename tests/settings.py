"""The project's settings for tests: sites are published under the system's temp directory (pytest's tmp_path)."""
import tempfile

from mtdispatch_project.settings import *  # noqa: F403

SITE_ROOTS = [tempfile.gettempdir()]
PUBLISHQUEUE = {"SITE_ROOTS": SITE_ROOTS}
