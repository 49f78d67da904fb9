"""publishqueue's settings: ``PUBLISHQUEUE = {...}`` in a project's settings overrides these defaults."""
from __future__ import annotations

from typing import Any

from dispatch.conf import AppSettings

DEFAULTS: dict[str, Any] = {
    # Site roots may only be under these directories (MT's BaseSitePath); never inside the project or its
    # Python installation. A project must set at least one.
    "SITE_ROOTS": [],
    # Output files must have one of these extensions (web files only: never .py, .php, .cgi, dotfiles).
    "OUTPUT_EXTENSIONS": [
        "html", "htm", "xhtml", "xml", "rss", "atom", "rdf", "json", "jsonld", "txt", "css", "js", "mjs", "svg",
        "ics", "csv", "webmanifest", "map",
    ],
    # Job priorities, higher first, by archive type name (overriding the priority each archive type registers),
    # and "main_index" for the index templates named in MAIN_INDEX_IDENTIFIERS. Empty: MT's table, as the content
    # apps register it (the blog: preferred entry pages 10, other entry pages 5, index/default/atom/feed index files
    # 9, other index files 8, daily 4, weekly 3, monthly 2, yearly, category, author and category-monthly 1).
    "PRIORITIES": {},
    # Priority for the jobs a template save queues for all its files.
    "TEMPLATE_SAVE_PRIORITY": 0,
    # A template save queues the files of a template with more files than this (all Via Publish Queue) through a
    # job (``republish-template``, at RUN_PRIORITY) that queues them a chunk per transaction, rather than in the
    # saving transaction: on SQLite that transaction holds the database's only write lock, and queueing 5,300 files
    # in it made entry saves and workers' commits wait up to 1.2 s. None: always in the saving transaction.
    "TEMPLATE_SAVE_INLINE_FILES": 1000,
    # Priority of a publish run's jobs (Publish site, Save and publish, a Statically published template's save,
    # dry runs): above every archive type's, as someone is watching its progress.
    "RUN_PRIORITY": 20,
    # A Statically published template's save writes its files in the request when they are at most this many (an
    # index template's page, like a preview); more start a publish run that workers do (or the run's page, in the
    # browser, one page per request, when no worker is running).
    "STATIC_SAVE_MAX_FILES": 1,
    # Template identifiers given PRIORITIES["main_index"] when it is set.
    "MAIN_INDEX_IDENTIFIERS": ["main_index", "feed_atom", "feed_rss"],
    # The publishing profile "High-priority static + background" (MT's async_partial): these templates, and the
    # preferred mapping of these archive types, are Statically published; the rest Via Publish Queue.
    "PROFILE_STATIC_IDENTIFIERS": ["main_index", "feed_atom", "feed_rss"],
    "PROFILE_STATIC_ARCHIVE_TYPES": ["individual", "page"],
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
    # SIGTERM: a worker finishes its current job but exits after this long at the most.
    "STOP_TIMEOUT_SECONDS": 30,
    # Retention for the bounded history.
    "STATS_RETENTION_HOURS": 7 * 24,
    # The queue's depth and the jobs done are sampled per slot of this many seconds (the dashboard's chart and
    # rate), kept this long; the rate and the time to drain are measured over at most the last RATE_WINDOW.
    "SAMPLE_SECONDS": 5,
    "SAMPLE_RETENTION_HOURS": 24,
    "RATE_WINDOW_SECONDS": 300,
    "ERROR_RETENTION_DAYS": 30,
    # The sites' publishing activity logs (publishqueue.models.PublishActivity).
    "ACTIVITY_RETENTION_DAYS": 30,
    # How often a worker looks for due periodic tasks and django-q2 tasks (seconds).
    "PERIODIC_CHECK_SECONDS": 5,
    "BACKGROUND_CHECK_SECONDS": 1,
    # A worker running a batch looks for runnable jobs above the batch's rest when jobs were queued (it is woken at
    # their commit: publishqueue.wakeup), and at least this often (seconds): they cut the batch short.
    "PREEMPT_CHECK_SECONDS": 1.0,
    # Serve files from each blog's site root through Django (development and the demo; in
    # production the web server serves them and passes only misses to the app).
    "SERVE_PUBLISHED_FILES": True,
    # Where sites' files go, by name (publishqueue/targets.py): a site picks one in its publish_target field (blank:
    # "default"). {"name": {"BACKEND": "dotted.path", ...options}}; StorageTarget takes STORAGE (a STORAGES alias)
    # and CACHE_CONTROL.
    "TARGETS": {"default": {"BACKEND": "publishqueue.targets.FileSystemTarget"}},
    # Front-end caches told to drop the URLs whose content a publish changed (publishqueue/purge.py), by name:
    # {"varnish": {"BACKEND": "publishqueue.purge.HTTPPurgeBackend", "LOCATION": "http://127.0.0.1:6081"}}.
    "PURGE_BACKENDS": {},
    # Dynamically published pages are rendered once per change of what they show and kept in this cache (an alias
    # of CACHES; "" renders them on every request), at most this many seconds (publishqueue.dynamic).
    "DYNAMIC_CACHE": "default",
    "DYNAMIC_CACHE_SECONDS": 24 * 3600,
    # Compiled template engines kept in memory (one per blog and template version).
    "ENGINE_CACHE_SIZE": 64,
}


get_config = AppSettings("PUBLISHQUEUE", DEFAULTS)
