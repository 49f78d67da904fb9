from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from publishqueue import profiles
from publishqueue.admin import activity_url, report_after_commit
from publishqueue.sites import SiteLocationAdminMixin

from . import services
from .dependencies import EntryState
from .forms import EntryAdminForm
from .models import Blog, Category, Comment, Entry
from .preview import PreviewError, preview_entry


@admin.register(Blog)
class BlogAdmin(SiteLocationAdminMixin, admin.ModelAdmin):
    list_display = ["name", "site_url", "site_root", "language", "time_zone", "comment_policy", "activity"]
    search_fields = ["name"]
    readonly_fields = ["publishing"]

    @admin.display(description="Publishing")
    def publishing(self, obj) -> str:
        """The blog's publishing profile (MT's), set on its own page, which lists what it changes first."""
        if not obj.pk:
            return "-"
        profile = profiles.Profile(profiles.current(obj)).label
        change = reverse("admin:publishqueue_template_profile") + f"?site={obj.pk}"
        publish = reverse("admin:publishqueue_publishrun_add") + f"?site={obj.pk}"
        return format_html('{} (<a href="{}">change the profile</a>) · <a href="{}">Publish site</a>', profile,
                           change, publish)

    @admin.display(description=_("publishing activity"))
    def activity(self, obj) -> str:
        return format_html('<a href="{}">{}</a>', activity_url(obj.pk), _("Activity log"))

    def save_model(self, request, obj, form, change) -> None:
        before = services.shown_state(Blog.objects.get(pk=obj.pk)) if change else None
        report_after_commit(request, services.save_blog(blog=obj, before=before), f"Saved “{obj}”")


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["label", "slug", "blog"]
    list_filter = ["blog"]
    prepopulated_fields = {"slug": ["label"]}
    search_fields = ["label"]

    def save_model(self, request, obj, form, change) -> None:
        before = services.shown_state(Category.objects.get(pk=obj.pk)) if change else None
        report_after_commit(request, services.save_category(category=obj, before=before), f"Saved “{obj}”")

    def delete_model(self, request, obj) -> None:
        report_after_commit(request, services.delete_category(category=obj), f"Deleted “{obj}”")

    def delete_queryset(self, request, queryset) -> None:
        for category in queryset:
            self.delete_model(request, category)


@admin.register(Entry)
class EntryAdmin(admin.ModelAdmin):
    form = EntryAdminForm
    list_display = ["title", "blog", "status", "published_on", "author"]
    list_filter = ["blog", "status", "categories"]
    search_fields = ["title", "body"]
    date_hierarchy = "published_on"
    prepopulated_fields = {"slug": ["title"]}
    filter_horizontal = ["categories"]
    raw_id_fields = ["author"]
    actions = ["publish_entries", "unpublish_entries"]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """Dates are entered and shown in the blog's time zone (a scheduled entry goes live at that local
        time): the entry's blog, or the one the form posts or the URL names (?blog=ID)."""
        blog = _blog_of(object_id, request.POST.get("blog") or request.GET.get("blog"))
        if blog is None:
            return super().changeform_view(request, object_id, form_url, extra_context)
        with timezone.override(blog.zone):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()  # a TemplateResponse renders after the view: the form's dates, in the zone
            return response
    def get_urls(self):
        view = self.admin_site.admin_view(self.preview_view)
        return [
            path("preview/", view, name="blog_entry_preview"),
            path("<path:object_id>/preview/", view, name="blog_entry_preview_existing"),
            *super().get_urls(),
        ]

    def preview_view(self, request, object_id=None):
        """The entry's page with the changes in the form, rendered in memory: nothing is saved or published."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        entry = self.get_object(request, object_id) if object_id else None
        if object_id and entry is None:
            raise Http404("No such entry.")
        allowed = self.has_change_permission(request, entry) if entry else self.has_add_permission(request)
        if not allowed:
            raise PermissionDenied
        form = self.get_form(request, entry, change=entry is not None)(request.POST, request.FILES, instance=entry)
        if not form.is_valid():
            errors = format_html_join("", "<li>{}: {}</li>", ((f, "; ".join(e)) for f, e in form.errors.items()))
            return HttpResponse(format_html("<h1>This entry cannot be previewed</h1><ul>{}</ul>", errors), status=400)
        unsaved = form.save(commit=False)  # in memory only
        if unsaved.author_id is None:
            unsaved.author = request.user
        try:
            categories = list(form.cleaned_data.get("categories", []))
            response = HttpResponse(preview_entry(entry=unsaved, categories=categories))
        except PreviewError as exc:
            return HttpResponse(str(exc), status=400, content_type="text/plain")
        # Templates are untrusted code, and this page is served from the admin's origin: no scripts, its own origin
        # (the template preview's frames are sandboxed likewise).
        response["Content-Security-Policy"] = "sandbox"
        return response

    def save_model(self, request, obj, form, change) -> None:
        request._entry_before = EntryState.load(obj.pk, lock=True)  # the admin's change view is one transaction
        if not change and obj.author_id is None:
            obj.author = request.user
        services.save_knowing(obj, request._entry_before)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        entry = form.instance
        report = services.entry_changed(entry=entry, before=request._entry_before, blog=entry.blog)
        report_after_commit(request, report, f"Saved “{entry}”")

    def delete_model(self, request, obj) -> None:
        report = services.delete_entry(entry=obj)
        report_after_commit(request, report, f"Deleted “{obj}”")

    def delete_queryset(self, request, queryset) -> None:
        for entry in queryset:
            self.delete_model(request, entry)

    def _set_status(self, request, queryset, status: str) -> None:
        for entry in queryset.exclude(status=status):
            entry.status = status
            report = services.save_entry(entry=entry)
            report_after_commit(request, report, f"“{entry}”")

    @admin.action(description="Publish selected entries", permissions=["change"])
    def publish_entries(self, request, queryset) -> None:
        self._set_status(request, queryset, Entry.Status.PUBLISHED)

    @admin.action(description="Unpublish selected entries", permissions=["change"])
    def unpublish_entries(self, request, queryset) -> None:
        self._set_status(request, queryset, Entry.Status.UNPUBLISHED)


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ["author", "entry", "status", "ip", "created"]
    list_filter = ["status", "entry__blog"]
    search_fields = ["author", "email", "body", "ip"]
    raw_id_fields = ["entry"]
    actions = ["approve", "hold", "mark_junk"]

    def get_readonly_fields(self, request, obj=None):
        """A comment stays on the entry it was posted to (moving it left the old entry's pages showing it)."""
        readonly = super().get_readonly_fields(request, obj)
        return ["entry", *readonly] if obj is not None else readonly

    def save_model(self, request, obj, form, change) -> None:
        was_approved = change and Comment.objects.filter(pk=obj.pk, status=Comment.Status.APPROVED).exists()
        super().save_model(request, obj, form, change)
        report_after_commit(request, services.comment_changed(comment=obj, was_approved=was_approved), "Comment")

    def delete_model(self, request, obj) -> None:
        report_after_commit(request, services.delete_comment(comment=obj), "Deleted comment")

    def delete_queryset(self, request, queryset) -> None:
        for comment in queryset.select_related("entry__blog"):
            self.delete_model(request, comment)

    def _moderate(self, request, queryset, status: str) -> None:
        count = services.set_comment_status(comments=queryset.select_related("entry__blog"), status=status)
        self.message_user(request, f"{count} comment(s) marked {status}.")

    @admin.action(description="Approve selected comments", permissions=["change"])
    def approve(self, request, queryset) -> None:
        self._moderate(request, queryset, Comment.Status.APPROVED)

    @admin.action(description="Hold selected comments for moderation", permissions=["change"])
    def hold(self, request, queryset) -> None:
        self._moderate(request, queryset, Comment.Status.PENDING)

    @admin.action(description="Mark selected comments as junk", permissions=["change"])
    def mark_junk(self, request, queryset) -> None:
        self._moderate(request, queryset, Comment.Status.JUNK)


def _blog_of(entry_id, blog_id) -> Blog | None:
    if entry_id and str(entry_id).isdigit():
        found = Blog.objects.filter(entries__pk=entry_id).first()
        if found is not None:
            return found
    return Blog.objects.filter(pk=blog_id).first() if blog_id and str(blog_id).isdigit() else None
