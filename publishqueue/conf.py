"""mtdispatch settings with defaults, read through a cached getter.

Projects override any key in ``settings.MTDISPATCH``; the cache is cleared on ``setting_changed`` so
``override_settings(MTDISPATCH={...})`` works in tests (the django-debug-toolbar pattern).
"""
from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Job priorities by archive type, higher first (MT's numbers; the main index and feeds go first).
    "PRIORITIES": {
        "main_index": 11,
        "individual": 10,
        "index": 9,
        "monthly": 2,
        "category": 1,
        "yearly": 0,
        "daily": 0,
    },
    # Priority for the jobs a template save queues for all its files.
    "TEMPLATE_SAVE_PRIORITY": 0,
    # Template identifiers treated as "main index and feeds" for priority.
    "MAIN_INDEX_IDENTIFIERS": ["main_index", "feed_atom", "feed_rss"],
    "JOB_MAX_ATTEMPTS": 5,
    # Extra or replacement job handlers: {"kind": "dotted.path.to.callable"} (called with the claimed job).
    "JOB_HANDLERS": {},
    # A grabbed job belongs to its worker this long; a running job's lease is renewed every third of it.
    "LEASE_SECONDS": 60,
    # Retry after a failure: this long the first time, then doubling with +-20% jitter, up to the cap.
    "RETRY_BACKOFF_SECONDS": 300,
    "RETRY_BACKOFF_MAX_SECONDS": 6 * 3600,
    # --randomly picks a batch among this many times --load of the eligible top of the queue.
    "RANDOM_WINDOW": 5,
    # Worker heartbeat (dashboard) period, and when a silent worker is considered gone.
    "HEARTBEAT_SECONDS": 2,
    "HEARTBEAT_STALE_SECONDS": 60,
    # SIGTERM: a worker finishes its current job but exits after this long at the most.
    "STOP_TIMEOUT_SECONDS": 30,
    # Retention for the bounded history.
    "STATS_RETENTION_HOURS": 7 * 24,
    "ERROR_RETENTION_DAYS": 30,
    "JUNK_EXPIRY_DAYS": 14,
    # How often a worker looks for due periodic tasks and django-q2 tasks (seconds).
    "PERIODIC_CHECK_SECONDS": 5,
    "BACKGROUND_CHECK_SECONDS": 1,
    # Update services pinged (XML-RPC weblogUpdates.ping) when an entry goes live.
    "PING_URLS": [],
    # Email the entry's author about new comments (a django-q2 task).
    "NOTIFY_COMMENTS": True,
    # Serve files from each blog's site root through Django (development and the demo; in
    # production the web server serves them and passes only misses to the app).
    "SERVE_PUBLISHED_FILES": True,
    # Comments.
    "COMMENT_MAX_BODY": 5000,
    "COMMENT_MAX_NAME": 100,
    "COMMENT_ALLOWED_TAGS": ["a", "b", "i", "em", "strong", "code", "pre", "blockquote", "p", "br", "ul", "ol", "li"],
    # Entries listed on index templates.
    "INDEX_ENTRIES": 20,
    # Compiled template engines kept in memory (one per blog and template version).
    "ENGINE_CACHE_SIZE": 64,
}


@cache
def get_config() -> dict[str, Any]:
    """The effective settings: DEFAULTS overlaid with ``settings.MTDISPATCH``."""
    config = dict(DEFAULTS)
    user = getattr(settings, "MTDISPATCH", {}) or {}
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"Unknown MTDISPATCH settings: {', '.join(sorted(unknown))}")
    for key, value in user.items():
        if isinstance(DEFAULTS[key], dict):
            config[key] = {**DEFAULTS[key], **value}
        else:
            config[key] = value
    return config


@receiver(setting_changed)
def _clear_config_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "MTDISPATCH":
        get_config.cache_clear()
