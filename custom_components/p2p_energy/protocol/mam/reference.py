"""Which reference library's byte layout created payloads reproduce.

Both reference libraries read each other's payloads (and ours), but they
write slightly different bytes for the same message:

* ``"mam.js"``: @iota/mam.js 1.0.0-beta.10 (pure JavaScript), the default.
* ``"mam.client.js"``: @iota/mam 0.7.3, whose core is the Rust MAM crate
  compiled to 32-bit WebAssembly. It searches the nonce over 32 lanes seeded
  by a different pattern, leaves zero trytes of a number unflagged, and sizes
  payloads by an estimate that can leave a few zero trits at the end.
"""

from __future__ import annotations

from typing import Literal

MamReference = Literal["mam.js", "mam.client.js"]
