"""The offline-trained tokenizer, its cache and the incremental detokenizer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from examples.corpus import prompt_text
from examples.stack import tokenizer as tk


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOOPPROF_EXAMPLES_CACHE", str(tmp_path))
    return tmp_path


def test_trains_once_then_loads_from_cache(cache: Path) -> None:
    t0 = time.perf_counter()
    tok = tk.load_tokenizer(1000)
    cold_s = time.perf_counter() - t0
    assert tk.tokenizer_path(1000).parent == cache and tk.tokenizer_path(1000).exists()
    mtime = tk.tokenizer_path(1000).stat().st_mtime_ns
    t0 = time.perf_counter()
    again = tk.load_tokenizer(1000)
    warm_s = time.perf_counter() - t0
    assert tk.tokenizer_path(1000).stat().st_mtime_ns == mtime  # not retrained
    assert warm_s < cold_s
    text = prompt_text(200, seed=3)
    assert again.encode(text) == tok.encode(text)
    assert 100 < len(tok.encode(text)) < 400  # the corpus's chars-per-token estimate holds roughly


def test_chat_template_and_incremental_detokenization(cache: Path) -> None:
    tok = tk.load_tokenizer(1000)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=True)
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")
    text = prompt_text(300, seed=11) + " naïve café ✓"
    detok = tk.IncrementalDetokenizer(tok)
    deltas = [detok.add(i) for i in tok.encode(text)]
    assert "".join(deltas) == text
    assert sum(1 for d in deltas if d) > 100  # streamed piece by piece, not at the end
