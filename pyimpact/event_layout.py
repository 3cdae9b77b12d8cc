"""The byte layout of one probe event (struct pyi_event in probes/pyimpact.h).

Apart from ``pyimpact.timeline`` (which needs pandas) so that the probes can
be compiled and attached while pandas is still importing: the reader needs
only this layout and numpy.  ``pyimpact.timeline`` re-exports it.
"""
from __future__ import annotations

import numpy as np

# struct pyi_event, field for field (tests/test_event_layout.py compares the two without root).
EVENT_DTYPE = np.dtype([
    ("ts", "<u8"), ("dur", "<u8"), ("kind", "<u4"), ("tgid", "<u4"), ("tid", "<u4"),
    ("aux", "<i4"), ("ret", "<i8"), ("a", "<u8", (4,)), ("comm", "S16"),
])
assert EVENT_DTYPE.itemsize == 88
