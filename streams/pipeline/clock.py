"""*now* for windows and waiting times: the wall clock, or in replay mode the largest event ts."""

from __future__ import annotations

import time
from typing import Literal


class Clock:
    """Also the worker's watermark: the largest event `ts` it has processed."""

    def __init__(self, mode: Literal["wall", "event"] = "wall") -> None:
        self.mode = mode
        self.watermark_ms = 0

    def observe(self, ts_ms: int) -> None:
        if ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms

    def now_ms(self) -> int:
        if self.mode == "event":
            return self.watermark_ms
        return int(time.time() * 1000)
