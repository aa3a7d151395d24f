"""Group commit: concurrent writers share one durable transaction.

Every inbound message must be committed before its webhook is answered. Committed one by one,
each message pays for its own ``BEGIN IMMEDIATE … COMMIT`` (an fsync with
``synchronous=FULL``) and, on SQLite, waits its turn for the single write lock. Instead a
request hands its work — an async function of the session — to :class:`GroupWriter` and waits.
One writer task takes everything queued so far, runs the pieces one after the other in a
single transaction, commits once, and only then wakes each request with its own result. The
requests are answered after the commit that holds their rows, exactly as before; they just
share it.

If any piece fails, or the commit itself fails, the whole transaction rolls back (nothing of
the batch is stored) and every piece is run again in a transaction of its own, so one bad
message cannot fail its neighbours and each request gets its own outcome. A piece may
therefore run twice: its effects must stay inside the session (it is the same code that used
to run in ``db.write()``).

Bulk pieces (:meth:`GroupWriter.run_bulk`) are items for one function that stores many at once:
every item of that function in the batch goes to it in a single call (in arrival order), so
the hot path pays for a few multi-row statements per batch instead of a few per message. Alone,
after a failed batch, an item is handed to the same function as a batch of one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[T]]
# Stores many items in the caller's transaction; one result per item, in order.
BulkWork = Callable[[AsyncSession, list[Any]], Awaitable[list[Any]]]
Transaction = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(slots=True)
class _Piece(Generic[T]):
    work: Work[T] | None
    bulk: BulkWork | None = None
    item: Any = None
    future: asyncio.Future[T] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    async def alone(self, session: AsyncSession) -> T:
        if self.bulk is not None:
            [result] = await self.bulk(session, [self.item])
            return result  # type: ignore[no-any-return]
        assert self.work is not None
        return await self.work(session)


@dataclass(slots=True)
class GroupStats:
    """Counters for operations and benchmarks: how well requests were grouped."""

    batches: int = 0
    pieces: int = 0
    largest: int = 0
    retried_alone: int = 0


class GroupWriter:
    """Runs queued pieces of work in shared transactions, committed by one writer task.

    Args:
        transaction: opens one write transaction (``Database.write``); committed on exit.
        max_batch: the most pieces in one transaction (bounds a batch's latency).
    """

    def __init__(self, transaction: Transaction, *, max_batch: int = 64) -> None:
        self._transaction = transaction
        self._max_batch = max_batch
        self._queue: deque[_Piece[Any]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.stats = GroupStats()

    async def run(self, work: Work[T]) -> T:
        """Run ``work`` in a shared transaction; return its result once that has committed."""
        return await self._enqueue(_Piece(work))

    async def run_bulk(self, bulk: BulkWork, item: Any) -> Any:
        """Store ``item`` with ``bulk`` together with the batch's other items for it."""
        return await self._enqueue(_Piece(None, bulk, item))

    async def _enqueue(self, piece: _Piece[T]) -> T:
        self._queue.append(piece)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name="group-commit writer"
            )
        return await piece.future

    async def aclose(self) -> None:
        """Finish what is queued, then stop (the task restarts if more work comes)."""
        if self._task is not None and not self._task.done():
            # wait() never raises: a writer that was cancelled has answered its pieces already.
            await asyncio.wait([self._task])

    async def _drain(self) -> None:
        batch: list[_Piece[Any]] = []
        try:
            while self._queue:
                batch = []
                while self._queue and len(batch) < self._max_batch:
                    piece = self._queue.popleft()
                    if not piece.future.cancelled():  # its request is gone; never acknowledged
                        batch.append(piece)
                if batch:
                    await self._commit(batch)
        finally:
            # Cancelled (shutdown): whatever did not commit is answered with an error, not lost
            # in silence; the transaction in progress has rolled back.
            stopped = RuntimeError("the database writer stopped")
            for piece in (*batch, *self._queue):
                _settle(piece, error=stopped)
            self._queue.clear()

    async def _commit(self, batch: list[_Piece[Any]]) -> None:
        self.stats.batches += 1
        self.stats.pieces += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        results: list[Any] = [None] * len(batch)
        try:
            async with self._transaction() as session:
                bulks: dict[BulkWork, list[int]] = {}
                for n, piece in enumerate(batch):
                    if piece.bulk is not None:
                        bulks.setdefault(piece.bulk, []).append(n)
                    else:
                        results[n] = await piece.alone(session)
                for bulk, numbers in bulks.items():
                    outcomes = await bulk(session, [batch[n].item for n in numbers])
                    for n, outcome in zip(numbers, outcomes, strict=True):
                        results[n] = outcome
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], error=exc)
                return
            # Rolled back as a whole: give each piece a transaction of its own.
            log.info(
                "group commit of %d failed (%s); retrying alone", len(batch), type(exc).__name__
            )
            self.stats.retried_alone += len(batch)
            for piece in batch:
                await self._alone(piece)
            return
        for piece, result in zip(batch, results, strict=True):
            _settle(piece, result=result)

    async def _alone(self, piece: _Piece[Any]) -> None:
        try:
            async with self._transaction() as session:
                result = await piece.alone(session)
        except Exception as exc:
            _settle(piece, error=exc)
        else:
            _settle(piece, result=result)


def _settle(piece: _Piece[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if piece.future.done():  # the request was cancelled meanwhile
        return
    if error is not None:
        piece.future.set_exception(error)
    else:
        piece.future.set_result(result)
