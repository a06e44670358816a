"""Build a tiny random Llama checkpoint and a locally trained BPE tokenizer that real vLLM can serve on CPU.

Offline by design: nothing is downloaded. The weights are random (the text they produce is noise) because the
profiler cares about where time goes, not about what the model says. Two sizes: ``tiny`` makes engine steps
cheap so the Python frontend becomes the bottleneck; ``large`` makes steps slow so the engine does.
head_dim is kept at 64 (vLLM's CPU attention refuses 16).

    python examples/vllm/build_model.py --size tiny      # prints the model directory
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: make `examples` importable

CACHE_DIR = Path(os.environ.get("LOOPPROF_VLLM_CACHE", Path.home() / ".cache" / "loopprof-vllm"))
VOCAB_SIZE = 4096

# hidden size, layers, heads (head_dim = hidden / heads = 64), MLP width
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256},
    "large": {"hidden_size": 768, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 3072},
}

# A ChatML template in the style of Qwen3's (last-query search, </think> splitting, per-message strip): about
# 1 ms of real Jinja work per 16-turn request, as production templates cost, on vLLM's renderer thread pool.
CHAT_TEMPLATE = "".join(
    [
        "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) -%}",
        "{%- for message in messages[::-1] -%}",
        "{%- set index = (messages|length - 1) - loop.index0 -%}",
        "{%- if ns.multi_step_tool and message.role == \"user\" and message.content is string and not (message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) -%}",  # noqa: E501
        "{%- set ns.multi_step_tool = false -%}{%- set ns.last_query_index = index -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- for message in messages -%}",
        "{%- set content = message.content if message.content is string else '' -%}",
        '{%- if message.role == "assistant" -%}',
        "{%- set reasoning_content = '' -%}",
        "{%- if '</think>' in content -%}",
        "{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}",
        "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}",
        "{%- endif -%}",
        "{%- if loop.index0 > ns.last_query_index and reasoning_content -%}",
        "{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') + '<|im_end|>\\n' -}}",  # noqa: E501
        "{%- else -%}",
        "{{- '<|im_start|>' + message.role + '\\n' + content.strip() + '<|im_end|>\\n' -}}",
        "{%- endif -%}",
        "{%- else -%}",
        "{{- '<|im_start|>' + message.role + '\\n' + content.strip() + '<|im_end|>\\n' -}}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}",
    ]
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "qu", "ph", "st", "or", "an", "el", "ix"]


def corpus(n_lines: int = 4000, seed: int = 7) -> list[str]:
    """Deterministic pseudo-words, so BPE learns many merges and decoding is real work."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))) for _ in range(n_lines)]


def build_tokenizer(out: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    from examples.stack.tokenizer import train_bpe

    tok = train_bpe(corpus(), VOCAB_SIZE, SPECIAL_TOKENS, unk_token="<unk>")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def build_model(out: Path, size: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=False,
        torch_dtype="float32",
        **SIZES[size],
    )
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)


def model_dir(size: str) -> Path:
    return CACHE_DIR / f"llama-{size}"


def ensure_model(size: str = "tiny") -> Path:
    """Return the model directory, building it once; a marker file makes a half-written build rebuild."""
    if size not in SIZES:
        raise SystemExit(f"unknown size {size!r}: choose one of {', '.join(SIZES)}")
    out = model_dir(size)
    marker = out / ".loopprof-built"
    spec = json.dumps({**SIZES[size], "chat_template": CHAT_TEMPLATE}, sort_keys=True)
    if marker.exists() and marker.read_text() == spec:
        return out
    out.mkdir(parents=True, exist_ok=True)
    build_model(out, size)
    build_tokenizer(out)
    marker.write_text(spec)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    print(ensure_model(parser.parse_args().size))


if __name__ == "__main__":
    main()
