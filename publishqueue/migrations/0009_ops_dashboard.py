# Queue samples every few seconds with the jobs done in each slot; pauses; histograms (freshness, jobs).

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

SITE_MODEL = getattr(settings, "PUBLISHQUEUE_SITE_MODEL", "blog.Blog")


class Migration(migrations.Migration):

    dependencies = [
        ('publishqueue', '0008_publish_activity_log'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(SITE_MODEL),
    ]

    operations = [
        migrations.RenameField(model_name='queuesample', old_name='minute', new_name='at'),
        migrations.AlterField(
            model_name='queuesample', name='at', field=models.DateTimeField(help_text="The slot's start.", unique=True),
        ),
        migrations.AlterField(
            model_name='queuesample', name='ready', field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='queuesample', name='waiting', field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='queuesample', name='in_progress', field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='queuesample', name='failed', field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(model_name='queuesample', name='done', field=models.PositiveIntegerField(default=0)),
        migrations.AddField(
            model_name='queuesample', name='failures',
            field=models.PositiveIntegerField(default=0, help_text='Failed attempts in the slot.'),
        ),
        migrations.CreateModel(
            name='QueuePause',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('scope', models.CharField(choices=[('all', 'All jobs'), ('site', 'One site'), ('kind', 'One kind of job')], max_length=10)),
                ('kind', models.CharField(blank=True, max_length=50)),
                ('paused_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('note', models.CharField(blank=True, max_length=200)),
                ('paused_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('site', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=SITE_MODEL)),
            ],
            options={
                'ordering': ['paused_at', 'id'],
                'permissions': [('pause_queue', 'Can pause and resume the publish queue')],
            },
        ),
        migrations.CreateModel(
            name='MetricStat',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('minute', models.DateTimeField()),
                ('metric', models.CharField(max_length=30)),
                ('label', models.CharField(max_length=50)),
                ('bucket', models.PositiveSmallIntegerField(help_text='Index into publishqueue.metrics.BUCKETS.')),
                ('count', models.PositiveIntegerField(default=0)),
                ('sum_ms', models.BigIntegerField(default=0)),
                ('max_ms', models.BigIntegerField(default=0)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('minute', 'metric', 'label', 'bucket'), name='metricstat_unique')],
                'indexes': [models.Index(fields=['metric', 'minute'], name='metricstat_metric_minute')],
            },
        ),
        migrations.CreateModel(
            name='MetricTotal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('metric', models.CharField(max_length=30)),
                ('label', models.CharField(max_length=50)),
                ('bucket', models.SmallIntegerField()),
                ('count', models.PositiveBigIntegerField(default=0)),
                ('sum_ms', models.BigIntegerField(default=0)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('metric', 'label', 'bucket'), name='metrictotal_unique')],
            },
        ),
    ]
