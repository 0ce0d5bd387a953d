"""Faust codecs: UTF-8 string keys and orjson values for the changelog-backed tables."""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs


class StrCodec(codecs.Codec):
    """Keys are plain UTF-8 (the built-in `raw` codec would give bytes back on recovery)."""

    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return s.decode()


class OrjsonCodec(codecs.Codec):
    """Values are orjson; domain objects serialize through their `to_dict`."""

    def _dumps(self, obj: Any) -> bytes:
        to_dict = getattr(obj, "to_dict", None)
        return orjson.dumps(to_dict() if to_dict is not None else obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


def register() -> None:
    codecs.register("kefu-str", StrCodec())
    codecs.register("kefu-json", OrjsonCodec())
