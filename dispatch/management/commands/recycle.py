"""Ask every FastCGI manager and queue worker, on every host, to recycle (the dashboard's button)."""
import time

from django.core.management.base import BaseCommand

from dispatch.control import progress, request_recycle


class Command(BaseCommand):
    help = "Record a recycle request (every host acts on it within seconds; local managers at once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--note", default="manage.py recycle")
        parser.add_argument("--wait", type=float, default=0, help="Wait up to this long for acknowledgements.")

    def handle(self, *args, note: str, wait: float, **options) -> None:
        request = request_recycle(note=note)
        self.stdout.write(f"Recycle request #{request.pk} recorded.")
        deadline = time.monotonic() + wait
        state = progress(request)
        while wait and state["waiting"] and time.monotonic() < deadline:
            time.sleep(0.5)
            state = progress(request)
        for ack in state["acks"]:
            self.stdout.write(f"  {ack['kind']} {ack['host']}:{ack['pid']} acknowledged; new pids {ack['new_pids']}")
        for waiting in state["waiting"]:
            self.stdout.write(f"  waiting for {waiting['host']}:{waiting['pid']}")
