import mimetypes
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from openmmp.api_keys.auth import CompanyKey
from openmmp.errors import responses
from openmmp.kit.db import SessionDep
from openmmp.kit.schemas import Page, PageNumber, PageSize
from openmmp.models import BackgroundTask
from openmmp.models.task import TaskStatus
from openmmp.tasks import service as tasks
from openmmp.tasks.schemas import BackgroundTaskResponse, task_response

router = APIRouter(prefix="/background-task", tags=["Background Task"])

TaskId = Annotated[str, Path(alias="taskId", description="The background task's `id`")]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The result file",
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **responses(401, 403, 404, 409),
}


def result_response(request: Request, task: BackgroundTask) -> StreamingResponse:
    """A DONE task's result file, streamed with its media type, a file name and `Content-Length`."""
    media_type = task.result_media_type or "application/octet-stream"
    extension = mimetypes.guess_extension(media_type.partition(";")[0].strip()) or ""
    filename = _UNSAFE.sub("_", f"{task.type}-{task.public_id}{extension}")
    return StreamingResponse(
        tasks.result(request.app.state.db, task),
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": str(task.result_bytes),
        },
    )


@router.get(
    "",
    summary="List background tasks",
    description="The company's background tasks, newest first; filter with `type` and `status` "
    "(1 PENDING, 2 PROCESSING, 3 DONE, 4 FAIL).",
    response_model=Page[BackgroundTaskResponse],
    responses=responses(400, 401, 403),
)
async def list_tasks(
    subject: CompanyKey,
    session: SessionDep,
    type: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    status: Annotated[TaskStatus | None, Query()] = None,
    page: PageNumber = 1,
    size: PageSize = 20,
) -> Page[BackgroundTaskResponse]:
    total, items = await tasks.search(session, subject, type=type, status=status, page=page, size=size)
    return Page[BackgroundTaskResponse](
        total=total, page=page, size=size, items=[task_response(t) for t in items]
    )


@router.get(
    "/{taskId}",
    summary="Get a background task",
    description="Its status and progress; once DONE, its `summary` and `resultFile`.",
    response_model=BackgroundTaskResponse,
    responses=responses(401, 403, 404),
)
async def get_task(task_id: TaskId, subject: CompanyKey, session: SessionDep) -> BackgroundTaskResponse:
    return task_response(await tasks.get(session, subject, public_id=task_id))


@router.get(
    "/{taskId}/download",
    summary="Download a background task's result file",
    description="The result file of a DONE task, streamed, with the media type of its kind of task (CSV "
    "for the ones there are) and `Content-Length`: a download that ends short of it was cut. 409 while "
    "the task is not DONE (a FAIL task has no result file).",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSES,
)
async def download_result(
    task_id: TaskId, subject: CompanyKey, session: SessionDep, request: Request
) -> StreamingResponse:
    return result_response(request, await tasks.finished(session, subject, public_id=task_id))
