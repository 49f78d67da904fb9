"""Templates and their publishing modes, archive mappings, FileInfo, and the publish queue's rows."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .paths import PathError, validate_pattern
from .sites import site_model_label


class PublishingMode(models.TextChoices):
    STATIC = "static", "Statically"
    QUEUE = "queue", "Via Publish Queue"
    MANUAL = "manual", "Manually"
    DYNAMIC = "dynamic", "Dynamically"
    DISABLED = "disabled", "Do Not Publish"


MODE_HELP = {
    PublishingMode.STATIC: (
        "written during the request that changed the content it shows (a template save with more files than an "
        "index's starts a publish run instead)."
    ),
    PublishingMode.QUEUE: "a change queues a job; a runworker process writes the file in the background.",
    PublishingMode.MANUAL: "written only by a publish run (Publish, Publish site) or manage.py publish.",
    PublishingMode.DYNAMIC: "never written; the app renders it at its URL on each request.",
    PublishingMode.DISABLED: "never written; files already published are removed.",
}
MODE_HELP_TEXT = " ".join(f"{PublishingMode(mode).label}: {text}" for mode, text in MODE_HELP.items())

# Modes whose files are written to disk when their content changes.
WRITTEN_MODES = (PublishingMode.STATIC, PublishingMode.QUEUE)
# Modes whose files are never on the disk (those already written are removed).
UNWRITTEN_MODES = (PublishingMode.DYNAMIC, PublishingMode.DISABLED)
# Modes whose files are written to their paths, on a change or in a publish run (the others: never).
WRITING_MODES = (*WRITTEN_MODES, PublishingMode.MANUAL)


def mode_q(modes, *, via: str = "") -> Q:
    """Rows whose effective mode (the mapping's if it has one, else its template's: MT's templatemap build_type)
    is one of ``modes``. ``via``: the path to the mapping ("" on ArchiveMapping, "mapping__" on FileInfo)."""
    modes = [str(m) for m in modes]
    return Q(**{f"{via}mode__in": modes}) | Q(**{f"{via}mode": "", f"{via}template__mode__in": modes})


class Template(models.Model):
    class Kind(models.TextChoices):
        INDEX = "index", "Index template"
        ARCHIVE = "archive", "Archive template"
        MODULE = "module", "Template module"

    site = models.ForeignKey(site_model_label(), on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=100, help_text='Modules are included by name: {% include "Sidebar" %}.')
    identifier = models.SlugField(max_length=50, blank=True, help_text="Stable name of a built-in template.")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.INDEX)
    source = models.TextField(help_text="Django template language.")
    mode = models.CharField(
        "publishing", max_length=10, choices=PublishingMode.choices, default=PublishingMode.STATIC,
        help_text=MODE_HELP_TEXT,
    )
    rebuild_interval_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Index templates only: also republish every N minutes."
    )
    depends_on_comments = models.BooleanField(
        default=False, help_text="Republish when a comment is approved (entry pages always are)."
    )
    priority = models.IntegerField(
        null=True, blank=True, help_text="Queue priority for this template's jobs; blank uses the archive type's."
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    output_hash = models.CharField(
        max_length=64, blank=True, editable=False,
        help_text="Modules included cached: a hash of their last output, to republish their includers on a change.",
    )
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site", "kind", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="template_unique_name_per_site")]

    def __str__(self) -> str:
        return self.name

    @property
    def writes_files(self) -> bool:
        return self.mode in WRITTEN_MODES


class ArchiveMapping(models.Model):
    """Where a template's files go: one archive type and an output path pattern (MT's TemplateMap)."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="mappings")
    archive_type = models.CharField(max_length=20, help_text="One of the archive types content apps register.")
    path_pattern = models.CharField(
        max_length=255,
        help_text=(
            "Relative to the site root, with the archive type's fields, e.g. {year}/{month}/{slug}.html; "
            "a trailing '/' means index.html."
        ),
    )
    is_preferred = models.BooleanField(default=True, help_text="Used for permalinks to this archive type.")
    mode = models.CharField(
        "publishing", max_length=10, choices=PublishingMode.choices, blank=True, default="",
        help_text="This mapping's own publishing mode (MT's templatemap build type); blank: the template's.",
    )

    class Meta:
        ordering = ["template", "archive_type"]

    def __str__(self) -> str:
        return f"{self.archive_type_label}: {self.path_pattern}"

    @property
    def effective_mode(self) -> str:
        return self.mode or self.template.mode

    @property
    def archive_type_label(self) -> str:
        from .registry import registry

        known = registry.archive_types.get(self.archive_type)
        return known.label if known else self.archive_type

    def clean(self) -> None:
        from .registry import registry

        known = registry.archive_types.get(self.archive_type)
        if known is None:
            raise ValidationError({"archive_type": f"Unknown archive type {self.archive_type!r}."})
        try:
            validate_pattern(self.archive_type, self.path_pattern, known.fields)
        except PathError as exc:
            raise ValidationError({"path_pattern": str(exc)}) from exc
        template = getattr(self, "template", None)
        if template is None:
            return
        is_index = known.identified_by == "single"
        if template.kind == Template.Kind.MODULE:
            raise ValidationError("Template modules are included by other templates and have no output file.")
        if is_index != (template.kind == Template.Kind.INDEX):
            raise ValidationError(
                {"archive_type": "Index templates map to an index type; archive templates to the others."}
            )


class FileInfo(models.Model):
    """One output file: a template mapping rendered for one archive context (the index, an object, a period)."""

    site = models.ForeignKey(site_model_label(), on_delete=models.CASCADE, related_name="fileinfos")
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="fileinfos")
    mapping = models.ForeignKey(ArchiveMapping, on_delete=models.CASCADE, related_name="fileinfos")
    archive_type = models.CharField(max_length=20)
    context_key = models.CharField(max_length=64, help_text="index, entry:ID, category:ID or type:YYYY-MM-DD.")
    object_id = models.BigIntegerField(null=True, blank=True, help_text="The object an object archive shows.")
    period_start = models.DateField(null=True, blank=True)
    path = models.CharField(max_length=1024, help_text="Where the file belongs now, relative to the site root.")
    published_path = models.CharField(max_length=1024, blank=True, help_text="Where it was last written.")
    url = models.CharField(max_length=2048)
    content_hash = models.CharField(max_length=64, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "file info"
        constraints = [
            models.UniqueConstraint(fields=["mapping", "context_key"], name="fileinfo_unique_context"),
        ]
        indexes = [
            models.Index(fields=["site", "path"], name="fileinfo_site_path"),
            models.Index(fields=["archive_type", "object_id"], name="fileinfo_type_object"),
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def mode(self) -> str:
        """This file's publishing mode: its mapping's, or its template's when the mapping has none."""
        return self.mapping.mode or self.template.mode


class PublishedFile(models.Model):
    """A file the publisher put in a site root (recorded when it first appears at a path, forgotten when the
    publisher removes it): the orphan sweep removes those no FileInfo claims any more, and never other files."""

    site = models.ForeignKey(site_model_label(), on_delete=models.CASCADE, related_name="+")
    path = models.CharField(max_length=1024)
    written_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "path"], name="publishedfile_unique_path")]

    def __str__(self) -> str:
        return self.path


class Job(models.Model):
    """A queued unit of work (TheSchwartz's job row, with a generation so coalesced edits are not lost)."""

    kind = models.CharField(max_length=50, default="publish")
    unique_key = models.CharField(
        max_length=100, null=True, blank=True, help_text="A second insert with the same kind and key coalesces."
    )
    args = models.JSONField(default=dict, blank=True)
    fileinfo = models.ForeignKey(FileInfo, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    priority = models.IntegerField(default=0)
    run_after = models.DateTimeField(default=timezone.now)
    grabbed_until = models.DateTimeField(null=True, blank=True)
    grabbed_by = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    generation = models.PositiveIntegerField(default=1)
    created = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="Set once max attempts are used up.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "unique_key"], name="job_unique_kind_key")]
        indexes = [
            # Walked in claim order; failed jobs are not in it.
            models.Index(
                fields=["-priority", "run_after", "id"], name="job_claim_order", condition=Q(failed_at__isnull=True)
            ),
            models.Index(fields=["grabbed_by"], name="job_grabbed_by"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.unique_key or self.pk}"


class JobError(models.Model):
    """One failed attempt: kept after the job is gone, for the error log."""

    # No database constraint: completed jobs are deleted in bulk and their error log stays.
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="errors"
    )
    kind = models.CharField(max_length=50)
    unique_key = models.CharField(max_length=100, blank=True)
    fileinfo = models.ForeignKey(FileInfo, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    worker = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    message = models.TextField()
    traceback = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.kind}:{self.unique_key} at {self.created:%Y-%m-%d %H:%M:%S}"


class JobStat(models.Model):
    """Per-minute completion counts and latency sums for throughput and latency charts (bounded: purged
    by a periodic task). Workers add their counts once per batch."""

    minute = models.DateTimeField()
    kind = models.CharField(max_length=50)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    latency_ms = models.BigIntegerField(default=0, help_text="Sum over done jobs of finish time - run_after.")
    run_ms = models.BigIntegerField(default=0, help_text="Sum over done jobs of time spent running.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "kind"], name="jobstat_unique_minute_kind")]

    def __str__(self) -> str:
        return f"{self.kind} {self.minute:%Y-%m-%d %H:%M}: {self.done} done"


class PeriodicTask(models.Model):
    """When each periodic task is next due; a worker on any host takes a run by moving ``next_run``."""

    name = models.CharField(max_length=100, unique=True)
    next_run = models.DateTimeField()
    last_run = models.DateTimeField(null=True, blank=True)
    last_worker = models.CharField(max_length=200, blank=True)
    last_result = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class QueueSample(models.Model):
    """The queue every few seconds (``PUBLISHQUEUE["SAMPLE_SECONDS"]``), for the dashboard's chart, its rate and
    its time to drain: the depth by state as sampled in the slot (by a worker's periodic task, or the dashboard),
    and the jobs done and attempts failed in it (added by the workers as they complete batches). Bounded: purged
    after ``SAMPLE_RETENTION_HOURS``."""

    at = models.DateTimeField(unique=True, help_text="The slot's start.")
    ready = models.PositiveIntegerField(null=True, blank=True)
    waiting = models.PositiveIntegerField(null=True, blank=True)
    in_progress = models.PositiveIntegerField(null=True, blank=True)
    failed = models.PositiveIntegerField(null=True, blank=True)
    done = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0, help_text="Failed attempts in the slot.")

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} ready {self.ready}, done {self.done}"

    @property
    def backlog(self) -> int | None:
        if self.ready is None:
            return None
        return self.ready + (self.waiting or 0) + (self.in_progress or 0)


class QueuePause(models.Model):
    """An operator's pause of the publish queue: all of it, one site's jobs, or one kind of job. Workers read
    the pauses when they claim (and between the jobs of a batch), so a pause holds within a second; deleting
    the row resumes."""

    class Scope(models.TextChoices):
        ALL = "all", "All jobs"
        SITE = "site", "One site"
        KIND = "kind", "One kind of job"

    scope = models.CharField(max_length=10, choices=Scope.choices)
    site = models.ForeignKey(site_model_label(), null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=50, blank=True)
    paused_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    paused_at = models.DateTimeField(default=timezone.now)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["paused_at", "id"]
        permissions = [("pause_queue", "Can pause and resume the publish queue")]

    def __str__(self) -> str:
        if self.scope == self.Scope.SITE:
            return f"Paused: {self.site}"
        if self.scope == self.Scope.KIND:
            return f"Paused: {self.kind} jobs"
        return "Paused: all jobs"


class MetricStat(models.Model):
    """Histograms of the queue by minute (bounded like JobStat): one row per minute, metric, label and bucket,
    with the observations' count, sum and max. ``freshness`` (label: the site's id): seconds from the change
    that queued a file to the file in place; ``job_run`` and ``job_latency`` (label: the job kind): seconds a
    job ran, and from its run_after to its end."""

    minute = models.DateTimeField()
    metric = models.CharField(max_length=30)
    label = models.CharField(max_length=50)
    bucket = models.PositiveSmallIntegerField(help_text="Index into publishqueue.metrics.BUCKETS.")
    count = models.PositiveIntegerField(default=0)
    sum_ms = models.BigIntegerField(default=0)
    max_ms = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["minute", "metric", "label", "bucket"], name="metricstat_unique"),
        ]
        indexes = [models.Index(fields=["metric", "minute"], name="metricstat_metric_minute")]

    def __str__(self) -> str:
        return f"{self.metric}[{self.label}] {self.minute:%H:%M} bucket {self.bucket}: {self.count}"


class MetricTotal(models.Model):
    """The same histograms since the start, never purged (Prometheus counters must not go down), and plain
    counters (bucket -1: jobs failed)."""

    metric = models.CharField(max_length=30)
    label = models.CharField(max_length=50)
    bucket = models.SmallIntegerField()
    count = models.PositiveBigIntegerField(default=0)
    sum_ms = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["metric", "label", "bucket"], name="metrictotal_unique")]

    def __str__(self) -> str:
        return f"{self.metric}[{self.label}] bucket {self.bucket}: {self.count}"


class PublishActivity(models.Model):
    """One entry of a site's publishing activity log (MT's "Background publishing done"): a worker's batch, a
    Publish now or ``manage.py publish``, or the files a change published statically. Its files are listed (up
    to ``activity.FILES_LISTED``, written, removed and failed first). Purged after ``ACTIVITY_RETENTION_DAYS``."""

    class Kind(models.TextChoices):
        QUEUE = "queue", _("Publish queue")
        PUBLISH = "publish", _("Publish now")
        CHANGE = "change", _("Published on save")

    site = models.ForeignKey(site_model_label(), on_delete=models.CASCADE, related_name="+", verbose_name=_("site"))
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    started = models.DateTimeField(_("started"), default=timezone.now)
    finished = models.DateTimeField(_("finished"), default=timezone.now)
    actor = models.CharField(_("by"), max_length=200, blank=True, help_text=_("The user, or the worker."))
    written = models.PositiveIntegerField(_("written"), default=0)
    unchanged = models.PositiveIntegerField(_("unchanged"), default=0)
    removed = models.PositiveIntegerField(_("removed"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    # [[path, status, error], ...]: status is written, unchanged, removed or failed.
    files = models.JSONField(_("files"), default=list, blank=True)

    class Meta:
        verbose_name = _("publishing activity")
        verbose_name_plural = _("publishing activity log")
        ordering = ["-finished", "-id"]
        indexes = [
            models.Index(fields=["site", "-finished"], name="publishactivity_site_finished"),
            models.Index(fields=["finished"], name="publishactivity_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.finished:%Y-%m-%d %H:%M:%S}"

    @property
    def listed(self) -> int:
        return len(self.files)

    @property
    def total(self) -> int:
        return self.written + self.unchanged + self.removed + self.failed


class PublishRun(models.Model):
    """A tracked publish (MT's Publish Site dialog), or a dry run of a template change: a batch of high-priority
    jobs whose args carry the run's id, so that its progress is counted from the queue (done = total - left -
    failed). Never rendered in a request: workers run the jobs."""

    class Kind(models.TextChoices):
        PUBLISH = "publish", "Publish"
        DRY_RUN = "dry-run", "Dry run"

    class Scope(models.TextChoices):
        ALL = "all", "Everything"
        INDEXES = "indexes", "Index templates only"
        ARCHIVE_TYPE = "archive_type", "One archive type"
        TEMPLATE = "template", "One template"

    site = models.ForeignKey(site_model_label(), on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PUBLISH)
    scope = models.CharField(max_length=20, choices=Scope.choices, default=Scope.ALL)
    archive_type = models.CharField(max_length=20, blank=True, help_text="For the scope “One archive type”.")
    template = models.ForeignKey(
        Template, null=True, blank=True, on_delete=models.SET_NULL, related_name="publish_runs",
        help_text="For the scope “One template” (a module: the templates that include it).",
    )
    force = models.BooleanField(default=False, help_text="Rewrite files even when their content did not change.")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=200, blank=True)
    total = models.PositiveIntegerField(default=0, help_text="Jobs queued for it.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When no job of it was left.")
    # A dry run: the template source tried, how many files it would change, and a sample's diff.
    source = models.TextField(blank=True)
    changed = models.PositiveIntegerField(default=0)
    sample_path = models.CharField(max_length=1024, blank=True)
    sample_diff = models.TextField(blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "publish run"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}: {self.scope_label}"

    @property
    def scope_label(self) -> str:
        if self.scope == self.Scope.ARCHIVE_TYPE:
            from .registry import registry

            known = registry.archive_types.get(self.archive_type)
            return f"{known.label if known else self.archive_type} archives"
        if self.scope == self.Scope.TEMPLATE:
            return f"template “{self.template}”" if self.template_id else "a deleted template"
        return self.get_scope_display()


class PublishingProfile(models.Model):
    """A site's publishing profile (MT's custom_dynamic_templates): the last one applied to its templates."""

    class Profile(models.TextChoices):
        STATIC = "none", "Static publishing"
        BACKGROUND = "async_all", "Background publishing"
        PARTIAL = "async_partial", "High-priority static and background publishing"
        DYNAMIC_ARCHIVES = "archives", "Dynamic archives only"
        DYNAMIC = "all", "Dynamic publishing"
        CUSTOM = "custom", "Custom"

    site = models.OneToOneField(site_model_label(), on_delete=models.CASCADE, related_name="publishing_profile")
    profile = models.CharField(max_length=20, choices=Profile.choices, default=Profile.CUSTOM)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.site}: {self.get_profile_display()}"
