"""publishqueue knows no content app: templates and files belong to the site model (a setting), and a file's
context names its object by id (entries and categories were foreign keys to the blog app)."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

SITE_MODEL = getattr(settings, "PUBLISHQUEUE_SITE_MODEL", "blog.Blog")


class Migration(migrations.Migration):

    dependencies = [
        migrations.swappable_dependency(SITE_MODEL),
        ("publishqueue", "0004_process_registry"),
    ]

    operations = [
        migrations.RemoveConstraint("template", "template_unique_name_per_blog"),
        migrations.RemoveIndex("fileinfo", "fileinfo_blog_path"),
        migrations.RenameField("template", "blog", "site"),
        migrations.AlterField(
            "template", "site",
            models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="templates", to=SITE_MODEL),
        ),
        migrations.AlterModelOptions("template", options={"ordering": ["site", "kind", "name"]}),
        migrations.RenameField("fileinfo", "blog", "site"),
        migrations.AlterField(
            "fileinfo", "site",
            models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="fileinfos", to=SITE_MODEL),
        ),
        migrations.AddField(
            "fileinfo", "object_id",
            models.BigIntegerField(blank=True, null=True, help_text="The object an object archive shows."),
        ),
        migrations.RunSQL(
            "UPDATE publishqueue_fileinfo SET object_id = entry_id WHERE archive_type = 'individual';"
            "UPDATE publishqueue_fileinfo SET object_id = category_id WHERE archive_type = 'category';",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.RemoveField("fileinfo", "entry"),
        migrations.RemoveField("fileinfo", "category"),
        migrations.AlterField(
            "fileinfo", "archive_type", models.CharField(max_length=20),
        ),
        migrations.AlterField(
            "archivemapping", "archive_type",
            models.CharField(max_length=20, help_text="One of the archive types content apps register."),
        ),
        migrations.AlterField(
            "archivemapping", "path_pattern",
            models.CharField(
                max_length=255,
                help_text=(
                    "Relative to the site root, with the archive type's fields, e.g. {year}/{month}/{slug}.html; "
                    "a trailing '/' means index.html."
                ),
            ),
        ),
        migrations.AddIndex("fileinfo", models.Index(fields=["archive_type", "object_id"], name="fileinfo_type_object")),
        migrations.AddIndex("fileinfo", models.Index(fields=["site", "path"], name="fileinfo_site_path")),
        migrations.AddConstraint(
            "template", models.UniqueConstraint(fields=("site", "name"), name="template_unique_name_per_site")
        ),
    ]
