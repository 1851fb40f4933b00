"""Drop-in adapters: swap auditlog in for the audit stores Python gateways
use today, with a one-line change.

- :class:`AuditStore` (and :func:`get_audit_store` / :func:`set_audit_store`,
  ``AUDIT_BACKEND=auditlog``): a tool-governance layer's per-request store.
- :class:`AuditLogger`, :class:`AuditEntry` (and :func:`get_audit_logger` /
  :func:`set_audit_logger`): a memory service's fire-and-forget logger.
- :func:`tool_errors`: the failing-tool-call aggregation an extractor made
  from a sessions database.
"""

from .governance import (
    AuditStore,
    JsonlAuditStore,
    MemoryAuditStore,
    get_audit_store,
    set_audit_store,
    store_from_env,
)
from .memory import DEFAULT_ACTIONS, AuditEntry, AuditLogger, get_audit_logger, set_audit_logger
from .tool_errors import ToolErrorGroup, tool_errors

__all__ = [
    "AuditStore",
    "JsonlAuditStore",
    "MemoryAuditStore",
    "get_audit_store",
    "set_audit_store",
    "store_from_env",
    "AuditLogger",
    "AuditEntry",
    "DEFAULT_ACTIONS",
    "get_audit_logger",
    "set_audit_logger",
    "ToolErrorGroup",
    "tool_errors",
]
