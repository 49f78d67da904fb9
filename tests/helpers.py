"""Helpers for driving the Django admin like a browser does."""
from __future__ import annotations

import time

from django import forms
from django.db.utils import OperationalError


def wait_for(predicate, what: str, timeout: float = 30, interval: float = 0.1, detail=lambda: ""):
    """Poll ``predicate`` until it returns something true (returned), or fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}{detail()}")


def _field_data(bound) -> dict:
    widget = bound.field.widget
    if isinstance(widget, forms.MultiWidget):  # e.g. the admin's split date and time inputs
        context = widget.get_context(bound.html_name, bound.value(), {})
        return {sub["name"]: sub["value"] or "" for sub in context["widget"]["subwidgets"]}
    value = bound.value()
    if value is None or value is False:
        return {}
    if value is True:
        return {bound.html_name: "on"}
    if isinstance(value, (list, tuple)):
        return {bound.html_name: [str(v) for v in value]}
    return {bound.html_name: value}


def admin_form_data(response) -> dict:
    """The POST data a browser would send for an admin change form as rendered (main form and inlines)."""
    data: dict = {}
    forms_ = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        forms_ += [formset.management_form, *formset.forms]
    for form in forms_:
        for bound in form:
            data.update(_field_data(bound))
    return data


def past_locks(query):
    """``query()`` from the test's thread while a worker thread writes: the tests' in-memory SQLite database has a
    shared cache, where a table another connection is writing is "locked" at once (SQLITE_LOCKED) rather than
    waited for as a database file is (busy timeout); a CI run failed so. Tried again, up to 5 s."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return query()
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
