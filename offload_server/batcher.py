"""Dynamic batching: requests for one model are grouped up to max_batch_size or until the oldest has waited
max_queue_delay_us, whichever comes first, and the batch runs in a worker thread off the event loop.

While a batch runs, new requests queue up, so under load the next batch starts full and at once (the delay
only matters when the server is idle). One batch per model runs at a time: a CPU model already uses every
core for one call, and a backend object is never used from two threads at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from offload_server.backends import Backend
from offload_server.logs import event
from offload_server.metrics import ServerMetrics
from offload_server.preprocess import Preprocessor, softmax

log = logging.getLogger("offload_server.batcher")


@dataclass
class BatchOutcome:
    probs: np.ndarray  # [classes] probabilities of this request
    batch_size: int
    queue_s: float
    infer_s: float
    replica: str = "local"  # which replica ran the batch ("local" for the in-process backend)


@dataclass
class _Item:
    pixels: np.ndarray
    future: asyncio.Future[BatchOutcome]
    enqueued: float


class ModelStopped(RuntimeError):
    """The model is shutting down: the request is answered SHUTTING_DOWN (retry elsewhere)."""


class ModelBusy(RuntimeError):
    """The model tier cannot take or finish the request in time: answered BUSY (retry elsewhere)."""


class ModelRunner(Protocol):
    """Where a model's batches run, seen from the front door: this process (:class:`DynamicBatcher`) or a
    Ray Serve deployment (offload_server.ray_backend). Failures are exceptions: ModelStopped, ModelBusy,
    anything else means the inference failed."""

    async def submit(self, pixels: np.ndarray) -> BatchOutcome: ...

    async def stop(self) -> None: ...


def infer_batch(backend: Backend, pre: Preprocessor, pixels: np.ndarray, logits: bool) -> tuple[np.ndarray, float]:
    """One model call on a batch of pixels [N, H, W, C]: probabilities [N, classes] and the call's seconds.

    The one place a batch becomes model input and probabilities, used in-process and by Ray replicas alike,
    so both backends answer the same.
    """
    start = time.perf_counter()
    out = backend.predict(pre.to_model_input(pixels))
    probs = softmax(out) if logits else out
    if probs.shape[0] != pixels.shape[0]:
        raise RuntimeError(f"model returned {probs.shape[0]} rows for a batch of {pixels.shape[0]}")
    return probs, time.perf_counter() - start


class DynamicBatcher:
    def __init__(
        self,
        model_id: str,
        backend: Backend,
        preprocessor: Preprocessor,
        executor: Executor,
        metrics: ServerMetrics,
        *,
        max_batch_size: int,
        max_queue_delay_us: int,
        logits: bool = False,
    ) -> None:
        self.model_id = model_id
        self.backend = backend
        self.pre = preprocessor
        self.executor = executor
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_delay = max_queue_delay_us / 1e6
        self.logits = logits
        self._items: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.model_id}")

    async def stop(self) -> None:
        """Run every queued request, then end the worker."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    @property
    def queued(self) -> int:
        return len(self._items)

    async def submit(self, pixels: np.ndarray) -> BatchOutcome:
        if self._stopping:
            raise ModelStopped(f"model {self.model_id} is shutting down")
        future: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        self._items.append(_Item(pixels, future, time.perf_counter()))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            while not self._items:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._items[0].enqueued + self.max_delay
            while len(self._items) < self.max_batch_size and not self._stopping:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch: list[_Item] = []
            while self._items and len(batch) < self.max_batch_size:
                item = self._items.popleft()
                if not item.future.done():  # cancelled: timed out, or its client went away; not worth running
                    batch.append(item)
            if batch:
                await self._execute(batch)

    async def _execute(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            pixels = np.stack([item.pixels for item in batch])
            probs, infer_s = await loop.run_in_executor(self.executor, infer_batch, self.backend, self.pre, pixels,
                                                        self.logits)
        except Exception as exc:  # a failing model must fail its requests, never the worker
            event(log, "batch_failed", logging.ERROR, model=self.model_id, batch_size=len(batch), error=repr(exc))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        labels = (self.model_id,)
        self.metrics.batch_size.labels(*labels).observe(len(batch))
        self.metrics.inference_seconds.labels(*labels).observe(infer_s)
        for i, item in enumerate(batch):
            queue_s = started - item.enqueued
            self.metrics.queue_seconds.labels(*labels).observe(queue_s)
            if not item.future.done():  # the requester may have gone away
                item.future.set_result(BatchOutcome(probs[i], len(batch), queue_s, infer_s))
