"""The `backgroundTask` of the MMP API (api.md §4.6, §4.7): what a company sees of a task."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from openmmp.kit.paths import API_PREFIX
from openmmp.kit.schemas import ResponseModel
from openmmp.models import BackgroundTask
from openmmp.models.task import TaskStatus


class BackgroundTaskResponse(ResponseModel):
    """A background task: its progress while it runs, its summary and result file once DONE."""

    # The schema's name in the OpenAPI document is the MMP API's (pydantic names it by `__qualname__`).
    __qualname__ = "backgroundTask"
    model_config = ConfigDict(title="backgroundTask")

    id: str = Field(description="The task's id (`taskId` in URLs)")
    type: str = Field(description="What the task does, e.g. `phone_check` (Check bulk phones)")
    status: int = Field(description="1 PENDING, 2 PROCESSING, 3 DONE, 4 FAIL")
    cause: str = Field(description="The status as a word: PENDING, PROCESSING, DONE or FAIL")
    progress: int = Field(
        ge=0,
        le=100,
        description="Percent done: `processed` of `total` while it runs (0 while `total` is "
        "unknown), 100 once DONE",
    )
    total: int | None = Field(description="Items to process, once known")
    processed: int = Field(description="Items processed so far")
    summary: dict[str, Any] | None = Field(description="What the task found, as its type reports it")
    error: str | None = Field(description="Why the task failed (FAIL only)")
    result_file: str | None = Field(
        description="Path of the result file (GET it with the API key) once DONE, else null"
    )
    created_date: int
    updated_date: int
    finished_date: int | None = Field(description="When it became DONE or FAIL")


def progress(task: BackgroundTask) -> int:
    """Percent done: 100 only once DONE, however far `processed` got."""
    if task.status == TaskStatus.DONE:
        return 100
    if not task.total:
        return 0
    return max(0, min(99, task.processed * 100 // task.total))


def task_response(task: BackgroundTask) -> BackgroundTaskResponse:
    """The wire form of a task, for every endpoint that answers with a `backgroundTask`."""
    status = TaskStatus(task.status)
    return BackgroundTaskResponse(
        id=task.public_id,
        type=task.type,
        status=int(status),
        cause=status.name,
        progress=progress(task),
        total=task.total,
        processed=task.processed,
        summary=task.summary,
        error=task.error,
        result_file=(
            f"{API_PREFIX}/background-task/{task.public_id}/download" if status == TaskStatus.DONE else None
        ),
        created_date=task.created_at,
        updated_date=task.updated_at,
        finished_date=task.finished_at,
    )
