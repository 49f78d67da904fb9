"""Per-app settings namespaces with defaults, read through a cached getter.

Each app declares its defaults once (``DISPATCH = {...}``, ``PUBLISHQUEUE = {...}``, ``BLOG = {...}`` in a
project's settings override them); unknown keys are refused, dictionaries are merged one level deep, and the
cache is cleared on ``setting_changed`` so ``override_settings(DISPATCH={...})`` works in tests (the
django-debug-toolbar pattern).
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed


class AppSettings:
    """The settings of one app: ``defaults`` overlaid with ``settings.<name>``. Call it to read them."""

    def __init__(self, name: str, defaults: dict[str, Any]) -> None:
        self.name = name
        self.defaults = defaults
        self._cached: dict[str, Any] | None = None
        setting_changed.connect(self._clear, weak=False, dispatch_uid=f"app-settings-{name}")

    def __call__(self) -> dict[str, Any]:
        if self._cached is None:
            self._cached = self._load()
        return self._cached

    def cache_clear(self) -> None:
        self._cached = None

    def _load(self) -> dict[str, Any]:
        user = getattr(settings, self.name, {}) or {}
        unknown = set(user) - set(self.defaults)
        if unknown:
            raise ImproperlyConfigured(f"Unknown {self.name} settings: {', '.join(sorted(unknown))}")
        config = dict(self.defaults)
        for key, value in user.items():
            config[key] = {**self.defaults[key], **value} if isinstance(self.defaults[key], dict) else value
        return config

    def _clear(self, *, setting: str, **kwargs: Any) -> None:
        if setting == self.name:
            self.cache_clear()


get_config = AppSettings(
    "DISPATCH",
    {
        # How often a registered process (queue worker, ...) reports, and when a silent one is considered gone.
        "HEARTBEAT_SECONDS": 2,
        "HEARTBEAT_STALE_SECONDS": 60,
        # A FastCGI manager that has not published its pool for this long is not listed.
        "MANAGER_STALE_SECONDS": 30,
        # /dispatch/status answers staff, and these networks without a login.
        "STATUS_ALLOW": ["127.0.0.1/32", "::1/128"],
    },
)
