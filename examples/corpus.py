"""The bundled text: tokenizer training data and prompt source, shipped with Python itself (no download).

``pydoc_data.topics`` is the ~460 KB of English and code that ``help()`` shows; every CPython has it.
"""

from __future__ import annotations

import functools
import hashlib

CHARS_PER_TOKEN = 4.3  # measured for the tokenizer trained on this text (tokenizer.py)


@functools.lru_cache(maxsize=1)
def corpus_text() -> str:
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return "\n".join(topics[name] for name in sorted(topics))


def corpus_digest() -> str:
    """Short content hash: the tokenizer cache key, so another Python's corpus trains its own tokenizer."""
    return hashlib.sha256(corpus_text().encode()).hexdigest()[:12]


def prompt_text(approx_tokens: int, seed: int) -> str:
    """A prompt of about ``approx_tokens`` tokens, cut from a seed-dependent place so prompts differ."""
    text = corpus_text()
    n_chars = max(1, int(approx_tokens * CHARS_PER_TOKEN))
    start = (seed * 7919) % max(1, len(text) - n_chars)
    return text[start : start + n_chars]
