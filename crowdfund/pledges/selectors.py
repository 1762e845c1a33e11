"""Pledges: a backer sees only their own."""

from django.db.models import QuerySet

from crowdfund.common.errors import DomainError
from crowdfund.pledges.models import Pledge


def pledge_list(*, backer) -> QuerySet[Pledge]:
    return Pledge.objects.filter(backer=backer)


def pledge_get(*, pledge_id, backer) -> Pledge:
    pledge = pledge_list(backer=backer).filter(id=pledge_id).first()
    if pledge is None:
        raise DomainError("pledge_not_found", "No such pledge.", status=404)
    return pledge
