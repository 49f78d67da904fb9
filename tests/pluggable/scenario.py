"""Steps of the wheel test's docs project, run inside it with ``manage.py shell -c``; each prints JSON."""
import json
import sys

from django.test import Client
from docs.archives import save_page
from docs.models import Manual, Page

from publishqueue.models import ArchiveMapping, FileInfo, Job, Template

MODES = ("static", "queue", "manual", "dynamic", "disabled")
PAGE_SOURCE = "<title>{{ page.title }}</title>{% if parent %}<p>In {{ parent.title }}</p>{% endif %}" \
    "<ul>{% for child in children %}<li>{{ child.title }}</li>{% endfor %}</ul>"


def out(**values) -> None:
    sys.stdout.write(json.dumps(values) + "\n")


def setup(site_root: str) -> None:
    manual = Manual.objects.create(name="Manual", site_url="http://testserver/", site_root=site_root)
    contents = Template.objects.create(site=manual, name="Contents", kind="index", mode="static",
                                       source="{% for p in pages %}[{{ p.title }}]{% endfor %}")
    ArchiveMapping.objects.create(template=contents, archive_type="contents", path_pattern="index.html")
    for mode in MODES:
        template = Template.objects.create(site=manual, name=f"Page {mode}", kind="archive", mode=mode,
                                           source=PAGE_SOURCE)
        ArchiveMapping.objects.create(template=template, archive_type="page", path_pattern=mode + "/{path}.html")
    guide = Page(manual=manual, slug="guide", title="Guide")
    save_page(guide)
    save_page(Page(manual=manual, parent=guide, slug="install", title="Installing"))
    out(jobs=Job.objects.count(), manual_template=Template.objects.get(name="Page manual").pk)


def rename_parent(title: str) -> None:
    guide = Page.objects.get(slug="guide")
    guide.title = title
    save_page(guide)
    out(jobs=Job.objects.count())


def dynamic(path: str) -> None:
    response = Client().get(path)
    out(status=response.status_code, body=response.content.decode())


def files() -> None:
    found = FileInfo.objects.select_related("template")
    out(files={fi.path: fi.template.mode for fi in found}, jobs=Job.objects.count())
