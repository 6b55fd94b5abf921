"""Files companies upload for background tasks: stored in pieces as they arrive, read back by any worker.

`receive` writes each piece in a short transaction of its own (a long upload never holds SQLite's write
lock), and marks the upload complete with its last; memory stays at one piece whatever the file's size.
`materialize` writes a complete upload to a local file for a task's reader, piece by piece, on whichever
host the task runs; `forget` deletes it once the task is over. `prune` deletes what no task will read: an
upload cut short (the client gone), or one whose task ended without reading it to the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.kit.db import Database
from openmmp.models import Upload, UploadChunk

PIECE_BYTES = 1024 * 1024


async def receive(
    db: Database, *, company_id: int, filename: str, kind: str, body: AsyncIterator[bytes]
) -> Upload:
    """Store `body` as a new upload, piece by piece; the complete upload. An upload cut short (the client
    gone, the body refused as too large) stays incomplete and is never read."""
    async with db.write_sessions() as session, session.begin():
        upload = Upload(company_id=company_id, filename=filename[:255], kind=kind)
        session.add(upload)
    pending, seq, size = bytearray(), 0, 0

    async def store(data: bytes, *, last: bool) -> None:
        nonlocal seq
        async with db.write_sessions() as session, session.begin():
            if data:
                session.add(UploadChunk(upload_id=upload.id, seq=seq, data=data))
                seq += 1
            if last:
                found = await session.get(Upload, upload.id)
                assert found is not None
                found.size, found.complete = size, True

    async for part in body:
        pending += part
        size += len(part)
        while len(pending) >= PIECE_BYTES:
            await store(bytes(pending[:PIECE_BYTES]), last=False)
            del pending[:PIECE_BYTES]
    await store(bytes(pending), last=True)
    upload.size, upload.complete = size, True
    return upload


async def materialize(db: Database, upload_id: int, path: Path) -> None:
    """Write the complete upload to `path` (replaced), a few pieces at a time. LookupError when there is
    no such complete upload (deleted already)."""
    async with db.read_sessions() as session:
        upload = await session.get(Upload, upload_id)
    if upload is None or not upload.complete:
        raise LookupError(f"no complete upload {upload_id}")
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    await asyncio.to_thread(partial.write_bytes, b"")
    after = -1
    while True:
        async with db.read_sessions() as session:
            statement = (
                select(UploadChunk.seq, UploadChunk.data)
                .where(UploadChunk.upload_id == upload_id, UploadChunk.seq > after)
                .order_by(UploadChunk.seq)
                .limit(4)
            )
            rows = (await session.execute(statement)).all()
        if not rows:
            break
        await asyncio.to_thread(_append, partial, [data for _, data in rows])
        after = rows[-1][0]
    partial.replace(path)


def _append(path: Path, pieces: list[bytes]) -> None:
    with open(path, "ab") as file:
        for piece in pieces:
            file.write(piece)


async def forget(db: Database, upload_id: int) -> None:
    async with db.write_sessions() as session, session.begin():
        await session.execute(delete(UploadChunk).where(UploadChunk.upload_id == upload_id))
        await session.execute(delete(Upload).where(Upload.id == upload_id))


async def prune(session: AsyncSession, *, created_before: int, limit: int = 20) -> int:
    """Delete up to `limit` uploads made before `created_before` (epoch ms), their pieces with them (ON
    DELETE CASCADE); returns how many. An import reads its upload within minutes of it, and deletes it when
    it ends: one this old is left over. Bounded: a piece is up to 1 MiB."""
    chosen = select(Upload.id).where(Upload.created_at < created_before).order_by(Upload.id).limit(limit)
    ids = list((await session.execute(chosen)).scalars())
    if ids:
        await session.execute(delete(Upload).where(Upload.id.in_(ids)))
    return len(ids)
