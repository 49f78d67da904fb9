"""A site's versions: the keys under which compiled templates and site-wide variables are cached."""
from django.db.models import F

from .sites import get_site_model


def bump_templates_version(instance) -> None:
    """Any template or mapping change makes every process recompile the site's templates once."""
    site_id = getattr(instance, "site_id", None)
    sites = get_site_model().objects
    found = sites.filter(pk=site_id) if site_id else sites.filter(templates__pk=instance.template_id)
    found.update(templates_version=F("templates_version") + 1)


def bump_content_version(site_id: int) -> None:
    """Content shown on the site changed: invalidates the site-wide variables cached for rendering."""
    get_site_model().objects.filter(pk=site_id).update(content_version=F("content_version") + 1)
