"""A site's versions: the keys under which compiled templates and site-wide variables are cached."""
from django.db.models import F

from .sites import get_site_model


def bump_templates_version(instance) -> None:
    """Any template or mapping change makes every process recompile the site's templates once."""
    site_id = getattr(instance, "site_id", None)
    sites = get_site_model().objects
    found = sites.filter(pk=site_id) if site_id else sites.filter(templates__pk=instance.template_id)
    found.update(templates_version=F("templates_version") + 1)


def bump_content_version(site_id: int, *, site_wide: bool = True) -> None:
    """Content shown on the site changed: invalidates what is cached per content version (a content app's cached
    objects, Dynamic pages) and, unless the content app knows that the change leaves the site-wide variables
    as they were (``site_wide=False``: an entry's text edited), those variables and the cached modules
    rendered from them (``site_wide_version``)."""
    versions = {"content_version": F("content_version") + 1}
    if site_wide:
        versions["site_wide_version"] = F("site_wide_version") + 1
    get_site_model().objects.filter(pk=site_id).update(**versions)
