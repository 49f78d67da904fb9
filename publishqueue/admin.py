from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, F, Q
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template import TemplateSyntaxError
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from . import jobrows, services
from .models import ArchiveMapping, FileInfo, Job, JobError, PublishActivity, Template
from .overview import state_of
from .registry import registry
from .rendering import compile_source


def report_after_commit(request, report: services.ChangeReport, what: str) -> None:
    """Tell the editor what their change published once the static files are written (on commit)."""
    transaction.on_commit(
        lambda: messages.add_message(
            request, messages.WARNING if report.errors else messages.INFO, f"{what}: {report.summary()}."
        )
    )


# Variables publishqueue gives every page, whatever its content app.
PAGE_VARIABLES = {"archive_type": "this page's archive type", "file_url": "this page's URL"}


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = [
            "site", "name", "identifier", "kind", "mode", "source", "rebuild_interval_minutes",
            "depends_on_comments", "priority",
        ]
        widgets = {
            "mode": forms.RadioSelect,
            "source": forms.Textarea(attrs={"rows": 30, "cols": 110, "style": "font-family: monospace"}),
        }

    def clean(self):
        cleaned = super().clean()
        site, name, source = cleaned.get("site"), cleaned.get("name"), cleaned.get("source")
        if site and name and source is not None:
            try:
                compile_source(site=site, name=name, source=source)
            except TemplateSyntaxError as exc:
                self.add_error("source", f"This template does not compile: {exc}")
        return cleaned


class ArchiveMappingForm(forms.ModelForm):
    class Meta:
        model = ArchiveMapping
        fields = ["archive_type", "path_pattern", "is_preferred"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The archive types content apps registered (the model field has no fixed choices).
        self.fields["archive_type"] = forms.ChoiceField(choices=registry.choices(), label="Archive type")


class ArchiveMappingInline(admin.TabularInline):
    model = ArchiveMapping
    form = ArchiveMappingForm
    extra = 0


@admin.action(description="Publish now (all files of the selected templates)")
def publish_now(modeladmin, request, queryset) -> None:
    report = services.publish_templates(templates=queryset.select_related("site"), actor=request.user.get_username())
    level = messages.WARNING if report.errors else messages.SUCCESS
    modeladmin.message_user(request, f"Publish now: {report.summary()}.", level)


@admin.action(description="Queue all files of the selected templates")
def queue_all(modeladmin, request, queryset) -> None:
    report = services.publish_templates(templates=queryset.select_related("site"), queue=True)
    modeladmin.message_user(request, f"Queued {report.queued} file(s).", messages.SUCCESS)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    inlines = [ArchiveMappingInline]
    list_display = ["name", "site", "kind", "mode", "queued_jobs", "has_error", "modified"]
    list_display_links = ["name"]
    list_filter = ["site", "kind", "mode"]
    search_fields = ["name", "identifier", "source"]
    readonly_fields = ["last_error", "last_error_at", "version", "publish_button", "variables_reference"]
    actions = [publish_now, queue_all]
    fieldsets = [
        (None, {"fields": ["site", "name", "identifier", "kind", "mode", "publish_button"]}),
        ("Source", {"fields": ["source", "last_error", "last_error_at", "version"]}),
        ("Options", {"fields": ["rebuild_interval_minutes", "depends_on_comments", "priority"]}),
        ("Variables", {"fields": ["variables_reference"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _queued=Count("fileinfos__jobs", filter=Q(fileinfos__jobs__failed_at__isnull=True))
        )

    @admin.display(description="Queued jobs", ordering="_queued")
    def queued_jobs(self, obj) -> str:
        url = reverse("admin:publishqueue_job_changelist") + f"?fileinfo__template__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj._queued)

    @admin.display(description="Renders", boolean=True)
    def has_error(self, obj) -> bool:
        return not bool(obj.last_error)

    @admin.display(description="Available variables")
    def variables_reference(self, obj) -> str:
        """What templates of this template's archive types see (MT's tag reference): nothing else is there."""
        types = set(obj.mappings.values_list("archive_type", flat=True)) if obj.pk else set()
        shown = [t for t in registry.archive_types.values() if t.name in types or not types]
        sections = [(f"{t.label} pages", t.documentation) for t in shown]
        sections.append(("Every page", {**registry.site_variables_documentation, **PAGE_VARIABLES}))
        sections += [(name, fields) for name, fields in registry.objects_documentation.items()]
        return format_html_join(
            "", '<h4 style="margin: .8em 0 .2em">{}</h4><table>{}</table>',
            ((title, format_html_join("", "<tr><td><code>{}</code></td><td>{}</td></tr>", variables.items()))
             for title, variables in sections),
        )

    @admin.display(description="Publish")
    def publish_button(self, obj) -> str:
        if not obj.pk or obj.kind == Template.Kind.MODULE:
            return "-"
        url = reverse("admin:publishqueue_template_publish", args=[obj.pk])
        # A submit button of the change form (which carries the CSRF token) posting to the publish view.
        return format_html(
            '<button type="submit" class="button" formaction="{}" formnovalidate>Publish now</button>'
            '<span class="help"> Writes every file of this template now (unsaved edits are not used).</span>',
            url,
        )

    def get_urls(self):
        extra = [
            path(
                "<int:pk>/publish/",
                self.admin_site.admin_view(self.publish_view),
                name="publishqueue_template_publish",
            )
        ]
        return extra + super().get_urls()

    def publish_view(self, request, pk: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        template = get_object_or_404(Template, pk=pk)
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        publish_now(self, request, Template.objects.filter(pk=pk))  # the list action, for one template
        return HttpResponseRedirect(reverse("admin:publishqueue_template_change", args=[pk]))

    def save_model(self, request, obj, form, change) -> None:
        request._template_previous_mode = form.initial.get("mode") if change else None
        if change and "source" in form.changed_data:
            obj.version += 1
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        report = services.template_saved(template=form.instance, previous_mode=request._template_previous_mode)
        report_after_commit(request, report, f"Saved template “{form.instance}”")


@admin.register(FileInfo)
class FileInfoAdmin(admin.ModelAdmin):
    list_display = ["path", "template", "archive_type", "published_at"]
    list_filter = ["site", "archive_type", "template"]
    search_fields = ["path", "url"]
    list_select_related = ["template"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class JobStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("ready", "Ready"), ("waiting", "Waiting to retry"), ("in_progress", "In progress"),
                ("failed", "Failed")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.annotate(state=state_of(timezone.now())).filter(state=self.value())
        return queryset


class JobActionForm(ActionForm):
    priority = forms.IntegerField(required=False, help_text="For “Set priority”.")


@admin.action(description="Retry now (reset attempts)", permissions=["change"])
def retry_jobs(modeladmin, request, queryset) -> None:
    modeladmin.message_user(request, f"{jobrows.retry_now(queryset.values_list('id', flat=True))} job(s) will run now.")


@admin.action(description="Raise priority by 5", permissions=["change"])
def raise_priority(modeladmin, request, queryset) -> None:
    modeladmin.message_user(request, f"Raised {queryset.update(priority=F('priority') + 5)} job(s).")


@admin.action(description="Set priority", permissions=["change"])
def set_priority(modeladmin, request, queryset) -> None:
    value = request.POST.get("priority", "").strip()
    if not value.lstrip("-").isdigit():
        modeladmin.message_user(request, "Give a priority (a whole number) to set.", messages.ERROR)
        return
    modeladmin.message_user(request, f"Set priority {value} on {queryset.update(priority=int(value))} job(s).")


JOB_ACTIONS = {
    "retry": ("publishqueue.change_job", lambda jobs: jobrows.retry_now(jobs.values_list("id", flat=True))),
    "raise": ("publishqueue.change_job", lambda jobs: jobs.update(priority=F("priority") + 5)),
    "delete": ("publishqueue.delete_job", lambda jobs: jobs.delete()[0]),
}


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    # Fits at 1400 px beside the admin's sidebar and filters: the state says running/failed (who and when are
    # on the job's page), short times, the error cut with the whole in its title.
    list_display = ["__str__", "file", "template", "state", "priority", "when", "short_error"]
    list_filter = [JobStateFilter, "kind", ("fileinfo__site", admin.RelatedOnlyFieldListFilter),
                   ("fileinfo__template", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["fileinfo__template"]
    raw_id_fields = ["fileinfo"]
    search_fields = ["unique_key", "fileinfo__path", "last_error"]
    action_form = JobActionForm
    actions = [retry_jobs, raise_priority, set_priority, "delete_selected"]
    ordering = ["-priority", "run_after", "id"]

    def get_urls(self):
        from . import admin_views

        view = self.admin_site.admin_view
        return [
            path("<int:job_id>/do/<slug:action>/", view(self.job_action_view), name="publishqueue_job_action"),
            # The dashboard's queue controls.
            path("pause/", view(admin_views.pause), name="publishqueue_job_pause"),
            path("resume/<int:pk>/", view(admin_views.resume), name="publishqueue_job_resume"),
            path("cancel/", view(admin_views.cancel), name="publishqueue_job_cancel"),
            *super().get_urls(),
        ]

    def job_action_view(self, request, job_id: int, action: str) -> HttpResponse:
        """PQManager's actions on one job, from the dashboard: Retry now, Raise priority (+5), Delete."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if action not in JOB_ACTIONS:
            return HttpResponse(status=404)
        permission, apply = JOB_ACTIONS[action]
        if not request.user.has_perm(permission):
            raise PermissionDenied
        job = get_object_or_404(Job, pk=job_id)
        apply(Job.objects.filter(pk=job.pk))
        self.message_user(request, f"{action.capitalize()}: {job}.", messages.SUCCESS)
        return HttpResponseRedirect(request.POST.get("next") or reverse("admin:index"))

    class Media:
        css = {"all": ["publishqueue/admin_lists.css"]}

    @admin.display(description="Template", ordering="fileinfo__template__name")
    def template(self, obj) -> str:
        return obj.fileinfo.template.name if obj.fileinfo else "-"

    @admin.display(description="File", ordering="fileinfo__path")
    def file(self, obj) -> str:
        return obj.fileinfo.path if obj.fileinfo else "-"

    @admin.display(description="State")
    def state(self, obj) -> str:
        now = timezone.now()
        if obj.failed_at:
            state = "failed"
        elif obj.grabbed_until and obj.grabbed_until > now:
            state = "running"
        else:
            state = "ready" if obj.run_after <= now else "waiting"
        return f"{state}, {obj.attempts} attempt{'s' if obj.attempts > 1 else ''}" if obj.attempts else state

    @admin.display(description="Run after", ordering="run_after")
    def when(self, obj) -> str:
        local = timezone.localtime(obj.run_after)
        return local.strftime("%H:%M:%S" if local.date() == timezone.localdate() else "%Y-%m-%d %H:%M")

    @admin.display(description="Last error")
    def short_error(self, obj) -> str:
        if not obj.last_error:
            return ""
        short = obj.last_error if len(obj.last_error) <= 60 else obj.last_error[:59] + "…"
        return format_html('<span title="{}">{}</span>', obj.last_error[:1000], short)


@admin.register(JobError)
class JobErrorAdmin(admin.ModelAdmin):
    list_display = ["created", "kind", "unique_key", "attempt", "worker", "message"]
    list_filter = ["kind"]
    search_fields = ["message", "unique_key", "traceback"]
    readonly_fields = [f.name for f in JobError._meta.fields if f.name != "traceback"] + ["traceback_html"]
    exclude = ["traceback"]

    @admin.display(description="Traceback")
    def traceback_html(self, obj) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.traceback or "-")

    def has_add_permission(self, request) -> bool:
        return False


def activity_url(site_id: int) -> str:
    """The publishing activity log of one site (for the site model's admin)."""
    return reverse("admin:publishqueue_publishactivity_changelist") + f"?site__id__exact={site_id}"


@admin.register(PublishActivity)
class PublishActivityAdmin(admin.ModelAdmin):
    """Each site's publishing activity: what every worker batch, Publish now and statically published change
    wrote, left unchanged, removed and failed to write, with links to the files."""

    list_display = ["finished", "site", "kind", "actor", "counts", "seconds"]
    list_filter = [("site", admin.RelatedOnlyFieldListFilter), "kind"]
    list_select_related = ["site"]
    search_fields = ["actor"]
    date_hierarchy = "finished"
    fields = ["site", "kind", "actor", "started", "finished", "seconds", "counts", "file_list"]
    readonly_fields = fields

    @admin.display(description=_("seconds"))
    def seconds(self, obj) -> str:
        return f"{(obj.finished - obj.started).total_seconds():.1f}"

    @admin.display(description=_("files"))
    def counts(self, obj) -> str:
        listed = _(" (%(listed)d listed)") % {"listed": obj.listed} if obj.listed < obj.total else ""
        return _("%(written)d written, %(unchanged)d unchanged, %(removed)d removed, %(failed)d failed%(listed)s") % {
            "written": obj.written, "unchanged": obj.unchanged, "removed": obj.removed, "failed": obj.failed,
            "listed": listed,
        }

    @admin.display(description=_("file list"))
    def file_list(self, obj) -> str:
        """Each file with its status; written and unchanged ones link to their page."""
        rows = []
        for name, status, *error in obj.files:
            shown = name if status in ("removed", "failed") else format_html(
                '<a href="{}">{}</a>', obj.site.absolute_url(name), name
            )
            rows.append((status, shown, error[0] if error else ""))
        return format_html(
            '<table class="publish-run-files"><thead><tr><th>{}</th><th>{}</th><th></th></tr></thead>'
            "<tbody>{}</tbody></table>",
            _("status"), _("file"),
            format_html_join("", '<tr class="{0}"><td>{0}</td><td>{1}</td><td>{2}</td></tr>', rows),
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
