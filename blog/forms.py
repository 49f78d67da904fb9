import datetime as dt

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .conf import get_config


class CommentForm(forms.Form):
    """The public comment form posted from static pages (no CSRF token there: honeypot and throttle)."""

    entry_id = forms.IntegerField(widget=forms.HiddenInput)
    author = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    email = forms.EmailField(label=gettext_lazy("Email"), required=False, max_length=254)
    url = forms.URLField(label=gettext_lazy("Web site"), required=False, max_length=200, assume_scheme="https")
    body = forms.CharField(label=gettext_lazy("Comment"), widget=forms.Textarea)
    # Humans leave it empty (it is hidden by CSS and labelled so); bots fill every field.
    homepage = forms.CharField(required=False, max_length=200)

    def clean_author(self) -> str:
        author = self.cleaned_data["author"].strip()
        if len(author) > get_config()["COMMENT_MAX_NAME"]:
            raise forms.ValidationError(_("The name is too long."))
        return author

    def clean_body(self) -> str:
        body = self.cleaned_data["body"]
        limit = get_config()["COMMENT_MAX_BODY"]
        if len(body) > limit:
            raise forms.ValidationError(
                _("The comment is too long (%(length)d characters; at most %(limit)d).")
                % {"length": len(body), "limit": limit}
            )
        return body


class EntryAdminForm(forms.ModelForm):
    """The admin's entry form. An entry's categories are its blog's. Its date fields show whole seconds (Django's
    admin widgets), so a date posted back to the second it showed keeps the value it has, microseconds included:
    saving it without them moved the entry's date, and with it what every page's sidebar shows (code dates entries
    with ``timezone.now()``)."""

    def clean(self):
        cleaned = super().clean()
        blog, categories = cleaned.get("blog"), cleaned.get("categories")
        if blog is not None and categories is not None and any(c.blog_id != blog.pk for c in categories):
            self.add_error("categories", _("A category of another blog: an entry is filed under its own blog's."))
        for name, value in cleaned.items():
            stored = getattr(self.instance, name, None) if self.instance.pk is not None else None
            if isinstance(value, dt.datetime) and isinstance(stored, dt.datetime):
                if value == stored.replace(microsecond=0):
                    cleaned[name] = stored
        return cleaned
