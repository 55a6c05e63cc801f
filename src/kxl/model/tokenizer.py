"""CLIP BPE tokenizers for the tiny SDXL, learned from the synthetic tag vocabulary.

The files have CLIP's own layout (`vocab.json`: the 256 byte symbols, the same with `</w>`,
then one token per merge, then `<|startoftext|>` and `<|endoftext|>`; `merges.txt` starting
with `#version: 0.2`), so `CLIPTokenizer.from_pretrained(dir)` loads them exactly like SDXL's.
Every byte and every byte + `</w>` is in the vocabulary, so ANY caption tokenises (words the
merges do not cover fall back to smaller pieces, never to an unknown token).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from kxl.atomic import write_json, write_text
from kxl.errors import KxlError

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
# HakuBooru special tags (SPEC section 1) and the words of the pretraining captions.
SPECIAL_TAGS = (
    "masterpiece", "best quality", "great quality", "good quality", "normal quality",
    "low quality", "worst quality", "safe", "sensitive", "nsfw", "explicit",
    "newest", "recent", "mid", "early", "old",
)
# CLIP's pre-tokenizer split: specials, contractions, letter runs, single digits, other runs.
CLIP_SPLIT = (
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table (public algorithm)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in keep]
    # Insertion order is CLIP's vocabulary order: printable bytes first, then the others.
    table = {b: chr(b) for b in keep}
    table.update({b: chr(256 + n) for n, b in enumerate(rest)})
    return table


def clip_words(texts: Iterable[str]) -> Counter[tuple[str, ...]]:
    """Word counts under CLIP's normalisation and split, each word as byte-level symbols with
    `</w>` on its last symbol."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    norm = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    split = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    words: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        for word, _ in split.pre_tokenize_str(norm.normalize_str(text)):
            words[(*word[:-1], word[-1] + "</w>")] += 1
    return words


def learn_merges(texts: Iterable[str], n_merges: int) -> list[tuple[str, str]]:
    """BPE merges under CLIP's normalisation and split: the most frequent adjacent pair first,
    ties to the lexicographically smallest pair.

    Written out rather than taken from the `tokenizers` trainer, whose tie-breaking between
    equally frequent pairs varies from run to run (a hash-map order), which would make the tiny
    base's tokenizer files, and so the whole run, non-reproducible.
    """
    words = [[list(w), n] for w, n in sorted(clip_words(texts).items())]
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, (sym, n) in enumerate(words):
        for pair in zip(sym, sym[1:], strict=False):
            pairs[pair] += n
            where.setdefault(pair, set()).add(i)
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges and pairs:
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for i in sorted(where.pop(best, ())):
            sym, n = words[i]
            for pair in zip(sym, sym[1:], strict=False):
                pairs[pair] -= n
            merged, j = [], 0
            while j < len(sym):
                if j + 1 < len(sym) and (sym[j], sym[j + 1]) == best:
                    merged.append(sym[j] + sym[j + 1])
                    j += 2
                else:
                    merged.append(sym[j])
                    j += 1
            words[i][0] = merged
            for pair in zip(merged, merged[1:], strict=False):
                pairs[pair] += n
                where.setdefault(pair, set()).add(i)
        pairs = +pairs  # drop pairs whose count fell to zero
    return merges


def clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary order: bytes, bytes + </w>, merged tokens, then the two specials."""
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    seen = set(tokens)
    for a, b in merges:
        if a not in seen or b not in seen:
            raise KxlError(f"BPE merge {a!r} {b!r} uses a symbol not in the vocabulary")
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}


def write_clip_tokenizer(
    out_dir: Path, vocab: dict[str, int], merges: list[tuple[str, str]], pad_token: str
) -> None:
    """vocab.json, merges.txt and the small json configs CLIPTokenizer reads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    write_text(out_dir / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    write_json(out_dir / "special_tokens_map.json", specials)
    write_json(out_dir / "tokenizer_config.json", {
        **specials, "tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH,
        "do_lower_case": True, "errors": "replace", "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
    })


def build_tokenizers(out_dir: Path, texts: list[str], vocab_size: int) -> dict[str, int]:
    """Write `tokenizer/` and `tokenizer_2/` (same BPE; tokenizer_2 pads with "!" like
    SDXL's tokenizer_2) and return the special ids the text encoder configs need."""
    n_merges = vocab_size - 2 * 256 - 2
    if n_merges < 1:
        raise KxlError(f"base.synthetic.vocab_size {vocab_size} must exceed 514 (bytes + specials)")
    merges = learn_merges(texts, n_merges)
    vocab = clip_vocab(merges)
    write_clip_tokenizer(out_dir / "tokenizer", vocab, merges, pad_token=EOS)
    write_clip_tokenizer(out_dir / "tokenizer_2", vocab, merges, pad_token="!")
    return {"vocab_size": len(vocab), "bos": vocab[BOS], "eos": vocab[EOS], "pad2": vocab["!"]}
