"""Stock flup6 prefork FastCGI server (fcgi_fork), the baseline for bench/fcgi.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mtdispatch_project.settings")

from flup.server.fcgi_fork import WSGIServer  # noqa: E402

from mtdispatch_project.wsgi import application  # noqa: E402

if __name__ == "__main__":
    workers = int(sys.argv[2])
    WSGIServer(application, bindAddress=sys.argv[1], minSpare=workers, maxSpare=workers, maxChildren=workers,
               maxRequests=0, debug=False).run()
