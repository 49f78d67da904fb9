from django.db import migrations, models


def render_bodies(apps, schema_editor):
    """Fill the new column for existing entries (historical models have no save() logic)."""
    from blog.models import render_markdown

    Entry = apps.get_model("blog", "Entry")
    batch = []
    for entry in Entry.objects.only("id", "body").iterator(chunk_size=500):
        entry.body_html = render_markdown(entry.body)
        batch.append(entry)
        if len(batch) == 500:
            Entry.objects.bulk_update(batch, ["body_html"])
            batch = []
    Entry.objects.bulk_update(batch, ["body_html"])


class Migration(migrations.Migration):
    dependencies = [
        ("blog", "0002_content_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="entry",
            name="body_html",
            field=models.TextField(blank=True, editable=False, help_text="The body as HTML, rendered when saved."),
        ),
        migrations.RunPython(render_bodies, migrations.RunPython.noop),
    ]
