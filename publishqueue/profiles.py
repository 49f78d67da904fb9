"""Publishing profiles (MT's ``custom_dynamic_templates`` and ``update_publishing_profile``): one site setting that
sets every template's and mapping's mode at once, leaving Do Not Publish, Manually and scheduled ("republish every
N minutes", MT's Scheduled) templates alone.

* Static: every template Statically.
* Background: every template Via Publish Queue.
* High-priority static + background: the main index and feeds, and the preferred mapping of entry (and page)
  archives, Statically; everything else Via Publish Queue (the template is queued, its preferred mapping static).
* Dynamic archives only: index templates Statically, archive templates Dynamically.
* Dynamic: every template Dynamically.
* Custom: nothing changes (modes are set template by template).

Applying a profile also clears the mappings' own modes (MT's template save sets its maps' build type), except the
preferred entry mapping of the partial profile. Files whose mode becomes Dynamically leave the disk; files that were
Dynamically published and are now written are published by a publish run.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from .conf import get_config
from .models import (
    UNWRITTEN_MODES,
    ArchiveMapping,
    PublishingMode,
    PublishingProfile,
    PublishRun,
    Template,
)
from .sites import AbstractSite

Profile = PublishingProfile.Profile
STATIC, QUEUE, DYNAMIC = PublishingMode.STATIC, PublishingMode.QUEUE, PublishingMode.DYNAMIC

HELP = {
    Profile.STATIC: "Every template is published when the content it shows changes, in that request.",
    Profile.BACKGROUND: "Every template is published in the background by the queue workers.",
    Profile.PARTIAL: (
        "The main index, the feeds and entry pages (at their preferred path) in the request; everything else in "
        "the background."
    ),
    Profile.DYNAMIC_ARCHIVES: "Index templates are published statically; archives are rendered on each request.",
    Profile.DYNAMIC: "Every page is rendered by the application on each request; nothing is written.",
    Profile.CUSTOM: "Each template (and mapping) keeps the mode you set on it.",
}


@dataclass(frozen=True)
class Change:
    template: Template
    mapping: ArchiveMapping | None  # None: the template's own mode
    before: str  # the mode its files have now (a mapping's own, or its template's)
    after: str  # and after
    own: str  # what is set: the template's mode, or the mapping's own ("": its template's)

    @property
    def what(self) -> str:
        return "the template" if self.mapping is None else str(self.mapping)

    @property
    def before_label(self) -> str:
        return PublishingMode(self.before).label

    @property
    def after_label(self) -> str:
        label = PublishingMode(self.after).label
        if self.mapping is None:
            return label
        return f"{label} (this mapping's own)" if self.own else f"{label} (the template's)"


@dataclass
class Plan:
    site: AbstractSite
    profile: str
    changes: list[Change]
    left_alone: list[Template]

    @property
    def templates(self) -> list[Template]:
        return list({c.template.pk: c.template for c in self.changes}.values())


def left_alone(template: Template) -> bool:
    """MT leaves Disabled, Manually and Scheduled templates as they are."""
    return template.mode in (PublishingMode.DISABLED, PublishingMode.MANUAL) or bool(template.rebuild_interval_minutes)


def _targets(template: Template, mappings: list[ArchiveMapping], profile: str) -> tuple[str, dict[int, str]]:
    """The template's mode and each mapping's own mode under ``profile``."""
    config = get_config()
    own = {m.pk: "" for m in mappings}
    if profile == Profile.STATIC:
        return STATIC, own
    if profile == Profile.BACKGROUND:
        return QUEUE, own
    if profile == Profile.DYNAMIC_ARCHIVES:
        return (STATIC if template.kind == Template.Kind.INDEX else DYNAMIC), own
    if profile == Profile.DYNAMIC:
        return DYNAMIC, own
    # High-priority static + background.
    if template.identifier in config["PROFILE_STATIC_IDENTIFIERS"]:
        return STATIC, own
    for m in mappings:
        if m.archive_type in config["PROFILE_STATIC_ARCHIVE_TYPES"] and m.is_preferred:
            own[m.pk] = STATIC
    return QUEUE, own


def plan(site: AbstractSite, profile: str) -> Plan:
    """What applying ``profile`` to ``site`` would change: the templates' modes, and the mappings whose own mode is
    set or cleared (with the mode their files get)."""
    changes: list[Change] = []
    alone: list[Template] = []
    if profile == Profile.CUSTOM:
        return Plan(site, profile, changes, alone)
    templates = site.templates.exclude(kind=Template.Kind.MODULE).prefetch_related("mappings").order_by("kind", "name")
    for template in templates:
        if left_alone(template):
            alone.append(template)
            continue
        mappings = list(template.mappings.all())
        mode, own = _targets(template, mappings, profile)
        if mode != template.mode:
            changes.append(Change(template, None, template.mode, mode, mode))
        for mapping in mappings:
            before, after = mapping.mode or template.mode, own[mapping.pk] or mode
            if mapping.mode != own[mapping.pk]:  # a mapping that follows its template is in the template's row
                changes.append(Change(template, mapping, before, after, own[mapping.pk]))
    return Plan(site, profile, changes, alone)


def current(site: AbstractSite) -> str:
    found = PublishingProfile.objects.filter(site=site).values_list("profile", flat=True).first()
    return found or Profile.CUSTOM


def apply(site: AbstractSite, profile: str, *, user=None) -> tuple[Plan, PublishRun | None]:
    """Apply ``profile``: set the modes, take files now Dynamically published off the disk, and start a publish
    run for the files that were not written and now are. Returns the plan applied and the run, if any."""
    from . import runs
    from .fileinfos import template_fileinfos
    from .services import _unpublish_unwritten_files, written

    with transaction.atomic():
        done = plan(site, profile)
        before = {t.pk: _modes(t) for t in done.templates}
        for change in done.changes:
            if change.mapping is None:
                Template.objects.filter(pk=change.template.pk).update(mode=change.after)
                change.template.mode = change.after
            else:
                change.mapping.mode = change.own
                change.mapping.save(update_fields=["mode"])
        for template in done.templates:
            template.save(update_fields=["mode", "modified"])  # bumps the site's templates version
        PublishingProfile.objects.update_or_create(
            site=site, defaults={"profile": profile, "changed_at": timezone.now(), "changed_by": user}
        )
        newly_written = []
        for template in done.templates:
            _unpublish_unwritten_files(template)
            was_unwritten = {pk for pk, mode in before[template.pk].items() if mode in UNWRITTEN_MODES}
            if was_unwritten:
                newly_written += [fi for fi in written(template_fileinfos(template)) if fi.mapping_id in was_unwritten]
        run = None
        if newly_written:
            label = Profile(profile).label
            run = runs.start(PublishRun(site=site, started_by=user, reason=f"Publishing profile: {label}"),
                             newly_written)
    return done, run


def _modes(template: Template) -> dict[int, str]:
    """Each mapping's effective mode now."""
    return {m.pk: m.mode or template.mode for m in ArchiveMapping.objects.filter(template=template)}
