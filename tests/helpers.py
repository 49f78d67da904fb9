"""Helpers for driving the Django admin like a browser does."""
from __future__ import annotations


def admin_form_data(response) -> dict:
    """The POST data a browser would send for an admin change form as rendered (main form and inlines)."""
    data: dict = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        forms += [formset.management_form, *formset.forms]
    for form in forms:
        for bound in form:
            value = bound.value()
            if value is None or value is False:
                continue
            if value is True:
                value = "on"
            data[bound.html_name] = [str(v) for v in value] if isinstance(value, (list, tuple)) else value
    return data
