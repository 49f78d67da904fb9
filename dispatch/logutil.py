"""Logging helpers for settings.LOGGING."""
import logging


class NoTraceback(logging.Filter):
    """Log the message only (e.g. django.security's DisallowedHost, raised by every scanner): one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
