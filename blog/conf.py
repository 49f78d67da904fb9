"""The blog's settings: ``BLOG = {...}`` in a project's settings overrides these defaults."""
from __future__ import annotations

from typing import Any

from dispatch.conf import AppSettings

DEFAULTS: dict[str, Any] = {
    # Update services pinged (XML-RPC weblogUpdates.ping) when an entry goes live.
    "PING_URLS": [],
    # Email the entry's author about new comments (a django-q2 task).
    "NOTIFY_COMMENTS": True,
    # Comments.
    "COMMENT_MAX_BODY": 5000,
    "COMMENT_MAX_NAME": 100,
    "COMMENT_ALLOWED_TAGS": ["a", "b", "i", "em", "strong", "code", "pre", "blockquote", "p", "br", "ul", "ol", "li"],
    # Junk comments are deleted this long after they arrived.
    "JUNK_EXPIRY_DAYS": 14,
    # Entries listed on index templates.
    "INDEX_ENTRIES": 20,
    # Entries a queue worker keeps for the batches it renders, per content version of their blog (blog.entrycache),
    # in MB (an entry weighs its text plus about 3.5 KB; 128 MB hold 22,000 entries of 2.5 KB): a full rebuild then
    # loads each entry once per worker instead of once per page that shows it.
    "ENTRY_CACHE_MB": 128,
}

get_config = AppSettings("BLOG", DEFAULTS)
