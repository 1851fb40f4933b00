"""TEST-ONLY helpers. Not a stable API: names and behaviour may change in
any release, and nothing here belongs in production code.

:class:`Faults` scripts I/O failures in the writer through the engine's
fault seam (the one its Rust tests use, tests/engine/reliability_faults.rs),
so that tests can provoke what a full or failing disk does::

    from auditlog._testing import Faults

    faults = Faults()
    store = auditlog.open(tmp, _faults=faults)
    faults.fail("write", "ENOSPC")        # every block write fails ...
    ...
    faults.clear()                        # ... until the disk has room again

``fail(on, errno, *, times=None, skip=0, short=None)``: ``on`` is
``"write"``, ``"fdatasync"``, ``"create"``, ``"rename"`` or ``"remove"``;
``errno`` ``"EIO"``, ``"ENOSPC"``, ``"EDQUOT"``, ``"EROFS"``, ``"EACCES"`` or
a number; the rule lets ``skip`` matching operations through, then fires
``times`` times (None: until :meth:`Faults.clear`); ``short=n`` makes a
write store its first n bytes before failing. ``injected()`` counts the
faults injected by ``"operation ERRNO"``.

What the log does about each failure is documented in docs/reliability.md
and, for Python, in bindings/python/README.md ("Write failures").
"""

from __future__ import annotations

from ._native import _Faults as Faults

__all__ = ["Faults"]
