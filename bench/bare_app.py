"""The ceiling of our stack on this machine: FastAPI + SQLAlchemy async inserting one row per request.

Same server (uvicorn), same driver and pragmas as OpenMMP, none of its work: `make bench` reports our
ingest figures as a ratio to this one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from openmmp.kit.db import Database

URL = os.environ["BARE_DATABASE_URL"]
db = Database(URL)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with db.write_sessions() as session, session.begin():
        key = "INTEGER PRIMARY KEY" if db.is_sqlite else "BIGSERIAL PRIMARY KEY"
        await session.execute(text(f"CREATE TABLE IF NOT EXISTS bare (id {key}, body TEXT)"))
    yield
    await db.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/insert")
async def insert(body: dict[str, Any]) -> dict[str, str]:
    async with db.write_sessions() as session, session.begin():
        await session.execute(text("INSERT INTO bare (body) VALUES (:body)"), {"body": str(body)})
    return {"status": "ok"}
