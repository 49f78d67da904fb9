# The publish target every site model gets from publishqueue.sites.AbstractSite (publishqueue/targets.py).

import publishqueue.sites
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('docs', '0002_site_language_time_zone'),
    ]

    operations = [
        migrations.AddField(
            model_name='manual',
            name='publish_target',
            field=models.CharField(blank=True, choices=publishqueue.sites._target_choices, default='', help_text="Where the published files go: a target of PUBLISHQUEUE['TARGETS'] (blank: the default, the site root on this machine's file system).", max_length=64, verbose_name='publish target'),
        ),
    ]
