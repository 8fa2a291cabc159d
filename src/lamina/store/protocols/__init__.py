"""The storage seams: one protocol per aggregate or concern, each with a contract test suite
(tests/contract) that every implementation passes."""

from __future__ import annotations

from dataclasses import dataclass

from lamina.store.protocols.audit import AuditQuery, AuditStore
from lamina.store.protocols.blobs import BlobStore
from lamina.store.protocols.functions import CodeSigningConfigStore, FunctionStore, LayerStore
from lamina.store.protocols.iam import IamStore
from lamina.store.protocols.kms import KmsKeyStore
from lamina.store.protocols.logs import LogStore
from lamina.store.protocols.mappings import EventSourceMappingStore
from lamina.store.protocols.metrics import MetricsStore
from lamina.store.protocols.nodes import NodeRegistry, NodeReport, NodesUnavailable
from lamina.store.protocols.queue import EVENT_STATES, AsyncEvent, AsyncQueue
from lamina.store.protocols.rules import RuleStore
from lamina.store.protocols.test_events import SavedEvent, SavedEventStore
from lamina.store.protocols.transactional import Transactional

__all__ = [
    "EVENT_STATES",
    "AsyncEvent",
    "AsyncQueue",
    "AuditQuery",
    "AuditStore",
    "BlobStore",
    "CodeSigningConfigStore",
    "EventSourceMappingStore",
    "FunctionStore",
    "IamStore",
    "KmsKeyStore",
    "LayerStore",
    "LogStore",
    "MetricsStore",
    "NodeRegistry",
    "NodeReport",
    "NodesUnavailable",
    "RuleStore",
    "SavedEvent",
    "SavedEventStore",
    "Stores",
    "Transactional",
]


@dataclass(frozen=True)
class Stores:
    """The control plane's stores (one database plus blobs), built once and passed down.

    Logs, metrics and audit records live apart (their own files, their own write rates) and
    are opened on their own.
    """

    functions: FunctionStore
    layers: LayerStore
    code_signing: CodeSigningConfigStore
    blobs: BlobStore
    queue: AsyncQueue
    rules: RuleStore
    mappings: EventSourceMappingStore
    iam: IamStore
    kms: KmsKeyStore
    # The console's saved test events (they reference functions: same database).
    test_events: SavedEventStore
