"""Progress of a run, suited to where it goes: tqdm's bar on a terminal; on a file or a pipe
(``spatialnet demo > log``), where a bar's redraws would pile up, a plain line every tenth of the
run and at its end."""
from __future__ import annotations

import math
import sys
import time

PLAIN_LINES = 10  # about this many lines per run when the output is not a terminal


class Progress:
    def __init__(self, total: int, initial: int, desc: str, log=print, stream=None):
        stream = sys.stderr if stream is None else stream
        self.total, self.desc, self.log, self.t0 = total, desc, log, time.time()
        self.every = max(1, math.ceil(total / PLAIN_LINES))
        isatty = getattr(stream, "isatty", None)
        self.bar = None
        if isatty is not None and isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch", dynamic_ncols=True, file=stream)

    def update(self, epoch: int, post: dict) -> None:
        """``epoch`` (1-based) has ended; ``post``: what to show of it (name -> formatted value)."""
        if self.bar is not None:
            self.bar.set_postfix(post)
            self.bar.update(1)
        elif epoch % self.every == 0 or epoch == self.total:
            self.log(f"{self.desc}: epoch {epoch}/{self.total} " + " ".join(f"{k} {v}" for k, v in post.items())
                     + f" ({time.time() - self.t0:.0f} s)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
