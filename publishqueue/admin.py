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

from . import jobrows, services
from .models import ArchiveMapping, FileInfo, Job, JobError, Template
from .overview import state_of
from .registry import registry
from .rendering import compile_source, permalink_patterns


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
        fields = ["archive_type", "path_pattern", "is_preferred", "mode"]

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
    report = services.publish_templates(templates=queryset.select_related("site"))
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
        # Its mappings may change the site's permalinks, which every page's links show.
        request._template_previous_permalinks = permalink_patterns(obj.site_id)
        if change and "source" in form.changed_data:
            obj.version += 1
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        report = services.template_saved(
            template=form.instance, previous_mode=request._template_previous_mode,
            previous_permalinks=request._template_previous_permalinks,
        )
        report_after_commit(request, report, f"Saved template “{form.instance}”")

    def delete_model(self, request, obj) -> None:
        site, before = obj.site, permalink_patterns(obj.site_id)
        super().delete_model(request, obj)
        if before != permalink_patterns(site.pk):  # its mappings gave permalinks: the links on every page change
            report_after_commit(request, services.republish_site(site=site), f"Deleted template “{obj}”")

    def delete_queryset(self, request, queryset) -> None:
        for template in queryset.select_related("site"):
            self.delete_model(request, template)


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
    list_display = ["__str__", "fileinfo", "template", "priority", "run_after", "attempts", "grabbed_by",
                    "failed_at", "short_error"]
    list_filter = [JobStateFilter, "kind", ("fileinfo__site", admin.RelatedOnlyFieldListFilter),
                   ("fileinfo__template", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["fileinfo__template"]
    raw_id_fields = ["fileinfo"]
    search_fields = ["unique_key", "fileinfo__path", "last_error"]
    action_form = JobActionForm
    actions = [retry_jobs, raise_priority, set_priority, "delete_selected"]
    ordering = ["-priority", "run_after", "id"]

    def get_urls(self):
        action = path(
            "<int:job_id>/do/<slug:action>/", self.admin_site.admin_view(self.job_action_view),
            name="publishqueue_job_action",
        )
        return [action, *super().get_urls()]

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

    @admin.display(description="Template", ordering="fileinfo__template__name")
    def template(self, obj) -> str:
        return obj.fileinfo.template.name if obj.fileinfo else "-"

    @admin.display(description="Last error")
    def short_error(self, obj) -> str:
        return obj.last_error[:100]


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
