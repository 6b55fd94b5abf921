"""Operations: liveness, readiness and Prometheus metrics. Public by construction (no auth alias)."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from openmmp.errors import ServiceUnavailable, responses
from openmmp.kit.db import Database
from openmmp.kit.schemas import ResponseModel

router = APIRouter(tags=["Operations"])


class Health(ResponseModel):
    status: str


@router.get("/healthz", summary="The process is up", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", summary="The database answers", response_model=Health, responses=responses(503))
async def readyz(request: Request) -> Health:
    db: Database = request.app.state.db
    try:
        await db.ping()
    except Exception as exc:
        raise ServiceUnavailable("Database is not reachable", name="database") from exc
    return Health(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
