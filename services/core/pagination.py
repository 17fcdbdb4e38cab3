"""Opaque page tokens for List calls: an offset, wrapped so clients do not build them by hand."""

from __future__ import annotations

import base64
import binascii

from services.core.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int, *, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument("must not be negative", field=field)
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def decode_token(token: str, *, field: str = "page_token") -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, _, offset = raw.partition(":")
        if prefix != "o" or not offset.isdigit():
            raise ValueError(raw)
        return int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("not a page token this server issued", field=field) from None


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def next_token(offset: int, size: int, fetched: int) -> str:
    """Callers fetch size + 1 rows; a full extra row means there is a next page."""
    return encode_token(offset + size) if fetched > size else ""
