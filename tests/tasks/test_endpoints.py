"""The background task API: a task's progress, its result file, and nothing of another company's."""

from __future__ import annotations

import httpx
from tests.tasks.counting import TYPE, expected, params

API = "/api/v1/background-task"


class TestATaskRunsToDone:
    async def test_progress_while_it_runs_then_the_summary_and_the_exact_result_file(
        self, task_client: httpx.AsyncClient, owner, create_task, make_runner
    ):
        task_id = await create_task(owner, params(10, 3, sleep_s=0.01))
        pending = (await task_client.get(f"{API}/{task_id}", headers=owner.headers)).json()
        assert pending["id"] == task_id
        assert pending["type"] == TYPE
        assert (pending["status"], pending["cause"], pending["progress"]) == (1, "PENDING", 0)
        assert pending["resultFile"] is None

        # A time slice shorter than a step: each round runs one step, then hands the task back.
        runner = make_runner(time_slice_seconds=0.001)
        assert await runner.run_once() == 1
        running = (await task_client.get(f"{API}/{task_id}", headers=owner.headers)).json()
        assert (running["status"], running["cause"]) == (2, "PROCESSING")
        assert (running["processed"], running["total"], running["progress"]) == (3, 10, 30)
        assert running["resultFile"] is None
        assert running["finishedDate"] is None

        while await runner.run_once():
            pass
        done = (await task_client.get(f"{API}/{task_id}", headers=owner.headers)).json()
        assert (done["status"], done["cause"], done["progress"]) == (3, "DONE", 100)
        assert (done["processed"], done["total"]) == (10, 10)
        assert done["summary"] == {"counted": 10}
        assert done["error"] is None
        assert done["resultFile"] == f"{API}/{task_id}/download"
        assert done["finishedDate"] >= done["createdDate"]
        assert done["updatedDate"] >= running["updatedDate"]

        download = await task_client.get(done["resultFile"], headers=owner.headers)
        assert download.status_code == 200
        assert download.content == expected(10)
        assert download.headers["content-type"].startswith("text/csv")
        assert download.headers["content-length"] == str(len(expected(10)))
        assert download.headers["content-disposition"] == f'attachment; filename="{TYPE}-{task_id}.csv"'

    async def test_a_result_file_of_many_pieces_streams_whole(
        self, task_client: httpx.AsyncClient, owner, create_task, make_runner
    ):
        # 100,000 lines a step: steps of about 1.8 MiB, each stored as two pieces, read a few at a time.
        task_id = await create_task(owner, params(300_000, 100_000))
        assert await make_runner().run_once() == 1
        async with task_client.stream("GET", f"{API}/{task_id}/download", headers=owner.headers) as answer:
            assert answer.status_code == 200
            received = b"".join([piece async for piece in answer.aiter_bytes()])
        assert received == expected(300_000)


class TestTenantScoping:
    async def test_another_companys_task_is_not_found(
        self, task_client: httpx.AsyncClient, owner, new_owner, create_task, make_runner
    ):
        task_id = await create_task(owner, params(2, 2))
        await make_runner().run_once()
        other = await new_owner()
        for path in (f"{API}/{task_id}", f"{API}/{task_id}/download"):
            answer = await task_client.get(path, headers=other.headers)
            assert answer.status_code == 404
            assert answer.json()["errors"][0] == {
                "name": "taskId",
                "code": "RESOURCE_NOT_FOUND",
                "message": "No such background task",
            }
        listed = (await task_client.get(API, headers=other.headers)).json()
        assert task_id not in [item["id"] for item in listed["items"]]

    async def test_an_id_that_is_no_uuid_is_not_found(self, task_client: httpx.AsyncClient, owner):
        assert (await task_client.get(f"{API}/not-a-task", headers=owner.headers)).status_code == 404

    async def test_without_a_key_nothing_is_shown(self, task_client: httpx.AsyncClient, owner, create_task):
        task_id = await create_task(owner, params(1, 1))
        assert (await task_client.get(f"{API}/{task_id}")).status_code == 401


class TestDownloadBeforeDone:
    async def test_a_task_not_done_has_no_result_file_yet(
        self, task_client: httpx.AsyncClient, owner, create_task, make_runner
    ):
        task_id = await create_task(owner, params(10, 3))
        answer = await task_client.get(f"{API}/{task_id}/download", headers=owner.headers)
        assert answer.status_code == 409
        [error] = answer.json()["errors"]
        assert error["name"] == "taskId"
        assert "not done yet" in error["message"]
        await make_runner(time_slice_seconds=0.001).run_once()  # PROCESSING, part of the file written
        assert (await task_client.get(f"{API}/{task_id}/download", headers=owner.headers)).status_code == 409


class TestListing:
    async def test_newest_first_filtered_by_type_and_status_and_paged(
        self, task_client: httpx.AsyncClient, owner, create_task, make_runner
    ):
        first = await create_task(owner, params(1, 1))
        await make_runner().run_once()
        second = await create_task(owner, params(1, 1))
        other_type = await create_task(owner, params(1, 1), type="test_other")

        listed = (await task_client.get(API, headers=owner.headers)).json()
        assert [item["id"] for item in listed["items"]] == [other_type, second, first]
        assert (listed["total"], listed["page"], listed["size"]) == (3, 1, 20)

        of_type = (await task_client.get(API, params={"type": TYPE}, headers=owner.headers)).json()
        assert [item["id"] for item in of_type["items"]] == [second, first]
        done = (await task_client.get(API, params={"status": 3}, headers=owner.headers)).json()
        assert [item["id"] for item in done["items"]] == [first]
        paged = (await task_client.get(API, params={"page": 2, "size": 2}, headers=owner.headers)).json()
        assert ([item["id"] for item in paged["items"]], paged["total"]) == ([first], 3)

    async def test_an_unknown_status_is_a_400(self, task_client: httpx.AsyncClient, owner):
        answer = await task_client.get(API, params={"status": 7}, headers=owner.headers)
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["name"] == "status"


class TestTheDocument:
    async def test_the_schema_has_the_mmp_apis_name(self, task_client: httpx.AsyncClient):
        spec = (await task_client.get("/openapi.json")).json()
        assert "backgroundTask" in spec["components"]["schemas"]
        answer = spec["paths"][f"{API}/{{taskId}}"]["get"]["responses"]["200"]
        assert answer["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/backgroundTask"
        }
        assert "409" in spec["paths"][f"{API}/{{taskId}}/download"]["get"]["responses"]
