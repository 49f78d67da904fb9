from django import forms

from .conf import get_config


class CommentForm(forms.Form):
    """The public comment form posted from static pages (no CSRF token there: honeypot and throttle)."""

    entry_id = forms.IntegerField(widget=forms.HiddenInput)
    author = forms.CharField(max_length=100)
    email = forms.EmailField(required=False, max_length=254)
    url = forms.URLField(required=False, max_length=200, assume_scheme="https")
    body = forms.CharField(widget=forms.Textarea)
    # Humans leave it empty (it is hidden by CSS and labelled so); bots fill every field.
    homepage = forms.CharField(required=False, max_length=200)

    def clean_author(self) -> str:
        author = self.cleaned_data["author"].strip()
        if len(author) > get_config()["COMMENT_MAX_NAME"]:
            raise forms.ValidationError("The name is too long.")
        return author

    def clean_body(self) -> str:
        body = self.cleaned_data["body"]
        limit = get_config()["COMMENT_MAX_BODY"]
        if len(body) > limit:
            raise forms.ValidationError(f"The comment is too long ({len(body)} characters; at most {limit}).")
        return body
