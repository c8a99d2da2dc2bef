"""``/distortions``: the distortion kinds an analysis may ask for (`ecglens.distortions.KINDS`, in the
explainer's order) with the aliases accepted for each; the page builds its choice of kinds from it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from ecglens.distortions import ALIASES, KINDS
from ecglens.service.db import ApiKey
from ecglens.service.deps import EVERYONE, Access
from ecglens.service.schemas import DistortionKind, ListOf, Problem

router = APIRouter(prefix="/distortions", tags=["analyses"])
_ERRORS = {401: {"model": Problem}, 403: {"model": Problem}}


@router.get("", response_model=ListOf[DistortionKind], responses=_ERRORS)
def read_distortions(key: Annotated[ApiKey, Access(None, None, EVERYONE)]) -> ListOf[DistortionKind]:
    """The distortion kinds, in the explainer's order, each with its aliases."""
    kinds = [DistortionKind(name=kind, aliases=list(ALIASES[kind])) for kind in KINDS]
    return ListOf(data=kinds, count=len(kinds))
