# The permission every site model gets from publishqueue.sites.AbstractSite's Meta (who may move a site).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('docs', '0003_manual_publish_target'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='manual',
            options={'permissions': [('change_site_location', 'Can change the site root and URL')]},
        ),
    ]
