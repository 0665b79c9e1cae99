"""A model as the server serves it: its settings, its input preprocessing and where its batches run.

Apart from the server so that a connection (offload_server.connection) can name what it sends requests to
without importing the server that owns the connections.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from offload_server.batcher import ModelRunner
from offload_server.config import ModelConfig
from offload_server.preprocess import Preprocessor


@dataclass
class ServedModel:
    config: ModelConfig
    backend: Any  # what the model takes (``.input``) and a ``.description``: a Backend, or the Ray runner
    preprocessor: Preprocessor
    runner: ModelRunner  # where its batches run: a DynamicBatcher in this process, or Ray Serve replicas
    request_timeout_s: float = 30.0  # an INFER not answered by then gets BUSY (ServerConfig.request_timeout_s)
