"""An asyncio micro-batcher: images of requests that arrive within a few milliseconds share one forward pass.

The model runs in a single worker thread, so the event loop stays free to accept uploads and one forward pass
runs at a time (the decoded images waiting for it are bounded by ``serve.max_decoded_pixels``). A request's
images stay together: a batch request is never split across passes, so a pass may hold up to
``max_batch - 1`` images plus one whole request (the model still chunks its own forward passes). When
a shared pass fails, its requests are run again one by one, so an image that breaks the model fails only the
request that sent it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)
EmbedFn = Callable[[list[Image.Image]], np.ndarray]


@dataclass(frozen=True)
class BatchInfo:
    """How a request's images were embedded: the size of the pass they rode in and its timings."""

    batch_size: int
    queue_ms: float
    embed_ms: float


@dataclass
class _Job:
    images: list[Image.Image]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Collects ``embed`` calls for up to ``wait_s``, until they hold ``max_batch`` images, and runs them as one
    pass."""

    def __init__(self, embed: EmbedFn, *, max_batch: int = 16, wait_s: float = 0.005):
        self._embed = embed
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.batches_run = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="img2prompt-embed")
        self._worker = asyncio.create_task(self._run(), name="img2prompt-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._worker = self._executor = self._queue = None

    async def embed(self, images: list[Image.Image]) -> tuple[np.ndarray, BatchInfo]:
        """Embed ``images`` (one request's worth) together with whatever else is queued right now."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        job = _Job(images, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            deadline = loop.time() + self.wait_s
            while sum(len(j.images) for j in jobs) < self.max_batch:
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:  # past the wait: still take what is already queued
                        jobs.append(self._queue.get_nowait())
                    else:
                        jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            await self._run_batch(loop, jobs)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        images = [image for job in jobs for image in job.images]
        started = time.perf_counter()
        try:
            vectors = await loop.run_in_executor(self._executor, self._embed, images)
        except Exception as exc:
            waiting = [job for job in jobs if not job.future.done()]
            if len(jobs) == 1:  # the model failed on this request alone: it gets the error, the loop lives on
                for job in waiting:
                    job.future.set_exception(exc)
                return
            log.warning("a forward pass of %d requests failed (%s: %s); running them one by one",
                        len(jobs), type(exc).__name__, exc)
            for job in waiting:
                await self._run_batch(loop, [job])
            return
        embed_ms = (time.perf_counter() - started) * 1000
        self.batches_run += 1
        offset = 0
        for job in jobs:
            count = len(job.images)
            info = BatchInfo(len(images), (started - job.queued_at) * 1000, embed_ms)
            if not job.future.done():  # a cancelled request (client went away) just drops its rows
                job.future.set_result((np.asarray(vectors[offset:offset + count], np.float32), info))
            offset += count
