from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, F, Q
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template import TemplateSyntaxError
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from . import jobrows, preview, profiles, runs, services
from .models import ArchiveMapping, FileInfo, Job, JobError, PublishActivity, PublishRun, Template
from .overview import state_of
from .registry import registry
from .rendering import compile_source, permalink_patterns
from .sites import get_site_model


def report_after_commit(request, report: services.ChangeReport, what: str) -> None:
    """Tell the editor what their change published once the static files are written (on commit)."""
    transaction.on_commit(
        lambda: messages.add_message(
            request, messages.WARNING if report.errors else messages.INFO, f"{what}: {report.summary()}."
        )
    )


# Variables publishqueue gives every page, whatever its content app.
PAGE_VARIABLES = {"archive_type": "this page's archive type", "file_url": "this page's URL"}


def normalize_newlines(source: str) -> str:
    """Browsers send a textarea's lines ended by CRLF: stored as sent, an edit of one line changed every line of
    every file the template writes."""
    return source.replace("\r\n", "\n")


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

    def clean_source(self) -> str:
        return normalize_newlines(self.cleaned_data["source"])

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


@admin.action(description="Publish the selected templates (a tracked run each)")
def publish_now(modeladmin, request, queryset) -> None:
    """MT's Publish on the template list, without rendering in the request: a publish run per template."""
    started = [start_template_run(request, template) for template in queryset.select_related("site")]
    links = format_html_join(", ", '<a href="{}">#{}</a>', ((run_url(run), run.pk) for run in started))
    modeladmin.message_user(request, format_html("Started publish run(s) {}.", links), messages.SUCCESS)


def run_url(run: PublishRun) -> str:
    return reverse("admin:publishqueue_publishrun_change", args=[run.pk])


def start_template_run(request, template: Template, reason: str = "Publish") -> PublishRun:
    run = PublishRun(site=template.site, scope=PublishRun.Scope.TEMPLATE, template=template,
                     started_by=request.user, reason=f"{reason}: template “{template}”")
    return runs.start(run)


@admin.action(description="Queue all files of the selected templates")
def queue_all(modeladmin, request, queryset) -> None:
    report = services.publish_templates(templates=queryset.select_related("site"), queue=True)
    modeladmin.message_user(request, f"Queued {report.queued} file(s).", messages.SUCCESS)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    inlines = [ArchiveMappingInline]
    # (What fits at 1400 px: the last change's time is on the template's page.)
    list_display = ["name", "site", "kind", "mode", "mapping_modes", "queued_jobs", "has_error"]
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
        ).prefetch_related("mappings")

    @admin.display(description="Mappings' own modes")
    def mapping_modes(self, obj) -> str:
        own = [(m.path_pattern, m.get_mode_display()) for m in obj.mappings.all() if m.mode]
        return format_html_join(", ", "{}: {}", own) if own else "-"

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
        if not obj.pk:
            return "-"
        url = reverse("admin:publishqueue_template_publish", args=[obj.pk])
        # A submit button of the change form (which carries the CSRF token) posting to the publish view.
        return format_html(
            '<button type="submit" class="button" formaction="{}" formnovalidate>Publish</button>'
            '<span class="help"> Starts a publish run of every file of this template (a module: of the templates '
            "that include it), done by the queue workers, and shows its progress. Unsaved edits are not used: "
            "“Save and publish” saves them first.</span>",
            url,
        )

    def get_urls(self):
        extra = [
            path(
                "<int:pk>/publish/",
                self.admin_site.admin_view(self.publish_view),
                name="publishqueue_template_publish",
            ),
            path("profile/", self.admin_site.admin_view(self.profile_view), name="publishqueue_template_profile"),
            path("<int:pk>/preview/", self.admin_site.admin_view(self.preview_view),
                 name="publishqueue_template_preview"),
            path("<int:pk>/dryrun/", self.admin_site.admin_view(self.dry_run_view),
                 name="publishqueue_template_dryrun"),
        ]
        return extra + super().get_urls()

    def profile_view(self, request):
        """Publishing profiles (MT's Publishing Profile dialog): choose one, see what it changes, apply it."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        sites = get_site_model().objects.order_by("pk")
        site = sites.filter(pk=request.POST.get("site") or request.GET.get("site") or 0).first() or sites.first()
        chosen = request.POST.get("profile") or request.GET.get("profile") or ""
        if chosen and chosen not in profiles.Profile.values:
            chosen = ""
        if request.method == "POST" and site is not None and chosen:
            done, run = profiles.apply(site, chosen, user=request.user)
            text = f"Applied the profile “{profiles.Profile(chosen).label}” to {site}: {len(done.changes)} change(s)"
            if run is not None:
                text = format_html('{}; <a href="{}">publish run #{}</a> writes {} file(s) now written.', text,
                                   run_url(run), run.pk, run.total)
            self.message_user(request, text, messages.SUCCESS)
            listing = reverse("admin:publishqueue_template_changelist")
            return HttpResponseRedirect(f"{listing}?site__id__exact={site.pk}")
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": "Publishing profile", "sites": sites,
            "site": site, "current": profiles.current(site) if site else "", "chosen": chosen,
            "choices": [(value, label, profiles.HELP[value]) for value, label in profiles.Profile.choices],
            "plan": profiles.plan(site, chosen) if site and chosen else None,
        }
        return TemplateResponse(request, "admin/publishqueue/template/profile.html", context)

    def publish_view(self, request, pk: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        template = get_object_or_404(Template.objects.select_related("site"), pk=pk)
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        return HttpResponseRedirect(run_url(start_template_run(request, template)))

    def _edited(self, request, pk: int) -> tuple[Template, str]:
        """The template and its source as edited in the form (unsaved)."""
        if request.method != "POST":
            raise PermissionDenied("Preview and dry run take the edited form (POST).")
        template = get_object_or_404(Template.objects.select_related("site"), pk=pk)
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        return template, normalize_newlines(request.POST.get("source", template.source))  # as a save stores it

    def preview_view(self, request, pk: int):
        """The template's edited source on a sample page of each of its archive types, rendered in memory."""
        template, source = self._edited(request, pk)
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "original": template,
            "title": f"Preview of “{template}” with your edits (not saved)",
            "samples": preview.template_samples(template, source),
        }
        return TemplateResponse(request, "admin/publishqueue/template/preview.html", context)

    def dry_run_view(self, request, pk: int):
        """How many of the template's files the edited source would change: a dry run (a background run, with
        progress) rendering each in memory and comparing it with its stored content hash."""
        template, source = self._edited(request, pk)
        run = PublishRun(site=template.site, kind=PublishRun.Kind.DRY_RUN, scope=PublishRun.Scope.TEMPLATE,
                         template=template, source=source, started_by=request.user,
                         reason=f"Dry run of an edit of “{template}”")
        runs.start(run, preview.dry_run_files(template))
        return HttpResponseRedirect(run_url(run))

    def response_add(self, request, obj, post_url_continue=None):
        return self._to_run(request, obj) or super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        return self._to_run(request, obj) or super().response_change(request, obj)

    def _to_run(self, request, obj):
        """Save and publish, or a save that started a run (a Statically published template with many files):
        the run's progress page."""
        run = getattr(request, "_template_run", None)
        if "_saveandpublish" in request.POST:
            if run is not None:  # the save's own run (its static files) is part of this one: one run to watch
                run.delete()
                request._template_report.run = None
            run = start_template_run(request, obj, "Save and publish")
        return HttpResponseRedirect(run_url(run)) if run is not None else None

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
            previous_permalinks=request._template_previous_permalinks, started_by=request.user,
            paths_changed=any(formset.has_changed() for formset in formsets)
            or not set(form.changed_data) <= SOURCE_ONLY_FIELDS,
        )
        request._template_run, request._template_report = report.run, report
        report_after_commit(request, report, f"Saved template “{form.instance}”")

    def delete_model(self, request, obj) -> None:
        site, before = obj.site, permalink_patterns(obj.site_id)
        super().delete_model(request, obj)
        if before != permalink_patterns(site.pk):  # its mappings gave permalinks: the links on every page change
            report_after_commit(request, services.republish_site(site=site), f"Deleted template “{obj}”")

    def delete_queryset(self, request, queryset) -> None:
        for template in queryset.select_related("site"):
            self.delete_model(request, template)


# Template fields whose change leaves which files a template has, and their paths, as they were (its site, kind,
# mode and mappings decide those).
SOURCE_ONLY_FIELDS = {"name", "identifier", "source", "rebuild_interval_minutes", "depends_on_comments", "priority"}


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
class PublishRunForm(forms.ModelForm):
    """MT's Publish Site dialog: a site and a scope."""

    class Meta:
        model = PublishRun
        fields = ["site", "scope", "archive_type", "template", "force"]
        widgets = {"scope": forms.RadioSelect}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["archive_type"] = forms.ChoiceField(
            choices=[("", "---------"), *registry.choices()], required=False, label="Archive type",
            help_text="For the scope “One archive type”: its files in every template that maps it.",
        )
        self.fields["template"].queryset = Template.objects.select_related("site").order_by("site", "kind", "name")
        self.fields["template"].label_from_instance = lambda t: f"{t.site} — {t.name} ({t.get_kind_display()})"

    def clean(self):
        cleaned = super().clean()
        scope, site, template = cleaned.get("scope"), cleaned.get("site"), cleaned.get("template")
        if scope == PublishRun.Scope.ARCHIVE_TYPE and not cleaned.get("archive_type"):
            self.add_error("archive_type", "Choose the archive type to publish.")
        if scope == PublishRun.Scope.TEMPLATE:
            if template is None:
                self.add_error("template", "Choose the template to publish.")
            elif site is not None and template.site_id != site.pk:
                self.add_error("template", f"“{template}” is not a template of {site}.")
        return cleaned


@admin.register(PublishRun)
class PublishRunAdmin(admin.ModelAdmin):
    """Publish site (a tracked run with a scope) and every run's progress, polled from a JSON view."""

    form = PublishRunForm
    list_display = ["__str__", "site", "started_by", "created", "progress_summary", "reason"]
    list_filter = ["kind", "site"]
    list_select_related = ["site", "template", "started_by"]

    def get_urls(self):
        info = "publishqueue_publishrun"
        return [
            path("<int:pk>/progress.json", self.admin_site.admin_view(self.progress_view), name=f"{info}_progress"),
            path("<int:pk>/step/", self.admin_site.admin_view(self.step_view), name=f"{info}_step"),
            *super().get_urls(),
        ]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a run is started, watched and deleted, never edited

    @admin.display(description="Progress")
    def progress_summary(self, obj) -> str:
        found = runs.progress(obj)
        text = f"{found.done}/{found.total} done" + (f", {found.failed} failed" if found.failed else "")
        if obj.kind == PublishRun.Kind.DRY_RUN:
            text += f", {obj.changed} would change"
        return text + ("" if found.finished else " …")

    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, {**(extra_context or {}), "title": "Publish site"})

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        sites = get_site_model().objects.values_list("pk", flat=True)[:2]
        if "site" not in initial and len(sites) == 1:  # the only site
            initial["site"] = sites[0]
        return initial

    def save_model(self, request, obj, form, change) -> None:
        obj.started_by = request.user
        obj.reason = obj.reason or "Publish site"
        runs.start(obj)

    def response_add(self, request, obj, post_url_continue=None):
        return HttpResponseRedirect(run_url(obj))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = get_object_or_404(PublishRun.objects.select_related("site", "template", "started_by"), pk=object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        found = runs.progress(run)
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "run": run, "progress": found.as_dict(),
            "title": str(run), "json_url": reverse("admin:publishqueue_publishrun_progress", args=[run.pk]),
            "step_url": reverse("admin:publishqueue_publishrun_step", args=[run.pk]),
            "job_url": reverse("admin:publishqueue_job_changelist"),
            "errors_url": reverse("admin:publishqueue_joberror_changelist"),
            "can_step": request.user.has_perm("publishqueue.add_publishrun"),
        }
        return TemplateResponse(request, "admin/publishqueue/publishrun/progress.html", context)

    def progress_view(self, request, pk: int) -> JsonResponse:
        run = get_object_or_404(PublishRun, pk=pk)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return JsonResponse(runs.progress(run).as_dict())

    def step_view(self, request, pk: int) -> JsonResponse:
        """No queue worker is running: the run's page publishes one of its files per request (a page, like a
        preview's), as MT's rebuild dialog does in the browser."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = get_object_or_404(PublishRun, pk=pk)
        if not request.user.has_perm("publishqueue.add_publishrun"):
            raise PermissionDenied
        ran = runs.step(run)
        return JsonResponse({"ran": ran, **runs.progress(run).as_dict()})
