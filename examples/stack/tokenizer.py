"""The stack's real tokenizer: a byte-level BPE trained offline on the bundled corpus, cached on disk, wrapped
in ``transformers.PreTrainedTokenizerFast`` with a chat template, plus vLLM's incremental detokenizer.

Cache: ``$LOOPPROF_EXAMPLES_CACHE`` or ``~/.cache/loopprof-examples``; the key is the corpus hash and vocab size.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from examples.corpus import corpus_digest, corpus_text

if TYPE_CHECKING:  # transformers takes seconds to import; the launcher only needs the cache path
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML, the template many open models ship.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def cache_dir() -> Path:
    return Path(os.environ.get("LOOPPROF_EXAMPLES_CACHE") or Path.home() / ".cache" / "loopprof-examples")


def tokenizer_path(vocab_size: int) -> Path:
    return cache_dir() / f"bpe-{corpus_digest()}-{vocab_size}.json"


def train_bpe(lines: Iterable[str], vocab_size: int, special_tokens: list[str], unk_token: str | None = None) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained offline on ``lines`` (the example stack and the real-vLLM
    tier both build theirs with it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=unk_token))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    return tok


def train_tokenizer(vocab_size: int) -> Path:
    """Train the BPE (about a second) and write it atomically, so concurrent first starts cannot read half a file."""
    tok = train_bpe(corpus_text().splitlines(), vocab_size, SPECIAL_TOKENS)
    path = tokenizer_path(vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    tok.save(tmp)
    os.replace(tmp, path)
    return path


def ensure_tokenizer(vocab_size: int) -> Path:
    """The cached tokenizer file, trained first on a cold cache."""
    path = tokenizer_path(vocab_size)
    return path if path.exists() else train_tokenizer(vocab_size)


def load_tokenizer(vocab_size: int = 8000) -> PreTrainedTokenizerFast:
    """The cached tokenizer, training it first when the cache has none."""
    path = ensure_tokenizer(vocab_size)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # "PyTorch was not found" is noise here
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        eos_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


class IncrementalDetokenizer:
    """Text deltas from a growing list of token ids, the way vLLM's ``detokenize_incrementally`` does it.

    Decoding only a short window (prefix_offset..end) keeps each step O(1); holding back text that ends in an
    incomplete UTF-8 sequence (U+FFFD) avoids emitting broken characters.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerFast) -> None:
        self._tok = tokenizer
        self.tokens: list[str] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""

    def add(self, token_id: int) -> str:
        self.tokens += self._tok.convert_ids_to_tokens([token_id], skip_special_tokens=False)
        prefix = self._tok.convert_tokens_to_string(self.tokens[self.prefix_offset : self.read_offset])
        new = self._tok.convert_tokens_to_string(self.tokens[self.prefix_offset :])
        if len(new) <= len(prefix) or new.endswith("\ufffd"):
            return ""
        delta = new[len(prefix) :]
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.tokens)
        self.text += delta
        return delta
