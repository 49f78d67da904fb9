"""WSGI entry point (also what ``runfcgi`` children serve)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mtdispatch_project.settings")

application = get_wsgi_application()
