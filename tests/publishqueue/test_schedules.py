"""Periodic tasks' django-q2 Schedules when several workers start at once."""
import pytest

from publishqueue.periodic import SCHEDULE_PREFIX, sync_schedules

pytestmark = pytest.mark.django_db


def test_a_schedule_two_starting_workers_both_created_is_kept_once_and_crashes_no_worker():
    """Two workers starting at the same time both found no Schedule and both created one (the name is not unique):
    every worker's loop then failed on get_or_create (MultipleObjectsReturned) and never ran a job (seen with four
    runworker processes started together on PostgreSQL)."""
    from django_q.models import Schedule

    assert sync_schedules() > 0
    ours = Schedule.objects.filter(name__startswith=SCHEDULE_PREFIX).order_by("pk")
    first = ours.first()
    twin = Schedule.objects.get(pk=first.pk)
    twin.pk = None
    twin.save()
    assert ours.filter(name=first.name).count() == 2

    assert sync_schedules() == 0
    assert list(ours.filter(name=first.name).values_list("pk", flat=True)) == [first.pk]
