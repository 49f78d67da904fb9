"""Stock flup6 prefork FastCGI server (fcgi_fork), the baseline for bench/fcgi.py."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# bench/queue.py would shadow the stdlib's queue: take this directory off the path, add the project's.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mtdispatch_project.settings")

from flup.server.fcgi_fork import WSGIServer  # noqa: E402

from mtdispatch_project.wsgi import application  # noqa: E402

if __name__ == "__main__":
    workers = int(sys.argv[2])
    WSGIServer(application, bindAddress=sys.argv[1], minSpare=workers, maxSpare=workers, maxChildren=workers,
               maxRequests=0, debug=False).run()
