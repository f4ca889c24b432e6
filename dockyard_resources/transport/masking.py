"""Replace secret strings by '***' before text reaches a log or an error message."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "***"
# Pieces shorter than this are not masked on their own: masking "a" or "0" would
# shred every message while protecting nothing.
_MIN_PIECE = 4


def mask_pieces(secrets: Iterable[str]) -> tuple[str, ...]:
    """The strings to hide: each secret, plus each line of a multi-line secret.

    Output is handled line by line, so a private key is only caught line by line.
    Longest first, so a secret that contains another is masked whole.
    """
    pieces: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        pieces.add(secret)
        for line in secret.splitlines():
            if len(line.strip()) >= _MIN_PIECE:
                pieces.add(line.strip())
    return tuple(sorted(pieces, key=len, reverse=True))


def mask(text: str, pieces: Iterable[str]) -> str:
    for piece in pieces:
        if piece:
            text = text.replace(piece, MASK)
    return text
