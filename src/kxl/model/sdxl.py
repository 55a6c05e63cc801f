"""SDXL base 1.0 at its real shapes, offline, with random weights.

The run this project exists for trains on SDXL (2.6B-parameter UNet, CLIP-L, OpenCLIP bigG,
VAE), which cannot be downloaded here. Its model configs ship in `sdxl_base_1_0/` (written from
the public values of the revision epsilon.yaml pins), so `kxl random-base` writes a random-init
SDXL single file at the real shapes and dtypes (fp16: ~6.9 GB) through the same writer as the
tiny base, and the same checked loader reads it. Used by the slow tests and benchmarks, never by
the default run.

Tokenizers: CLIP's vocabulary size (49,408) and its special tokens at their ids
(<|startoftext|> 49406, <|endoftext|> 49407; tokenizer_2 pads with "!", id 0), so every id the
text encoders' embeddings can see exists. CLIP's BPE merges cannot be had offline: the vocabulary
holds the 512 byte symbols and placeholder tokens, and captions tokenise byte by byte.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from kxl.atomic import write_json
from kxl.errors import KxlError
from kxl.model import tokenizer
from kxl.model.tiny import MODEL_INDEX, SCHEDULER_CONFIG

CONFIGS = Path(__file__).resolve().parent / "sdxl_base_1_0"
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
CLIP_VOCAB_SIZE = 49_408
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
# Embedding tables get CLIP's own init scale; every other matrix / kernel 1/sqrt(fan_in), so
# activations stay O(1) through 70 transformer blocks and fp16 forward passes stay finite.
EMBEDDING_STD = 0.02


def clip_vocab() -> dict[str, int]:
    """CLIP's vocabulary layout at its real size: bytes, bytes + </w>, placeholders, specials."""
    chars = list(tokenizer.bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    tokens += [f"<|kxl_unused_{i}|>" for i in range(CLIP_VOCAB_SIZE - 2 - len(tokens))]
    tokens += [tokenizer.BOS, tokenizer.EOS]
    return {t: i for i, t in enumerate(tokens)}


def write_config_dir(out: Path) -> None:
    """The diffusers config folder of SDXL base 1.0: model configs, scheduler, model index and
    the two tokenizers (see the module docstring for what they hold)."""
    for name in COMPONENTS:
        (out / name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CONFIGS / name / "config.json", out / name / "config.json")
    write_json(out / "scheduler" / "scheduler_config.json",
               {"_class_name": "EulerDiscreteScheduler", **SCHEDULER_CONFIG})
    write_json(out / "model_index.json", MODEL_INDEX)
    vocab = clip_vocab()
    tokenizer.write_clip_tokenizer(out / "tokenizer", vocab, [], pad_token=tokenizer.EOS)
    tokenizer.write_clip_tokenizer(out / "tokenizer_2", vocab, [], pad_token="!")


def _tensor_seed(seed: int, name: str) -> int:
    """Each tensor's own stream: its values do not depend on the order tensors are filled in."""
    return (seed << 32) ^ zlib.crc32(name.encode())


@torch.no_grad()
def _fill(name: str, t: torch.Tensor, seed: int) -> None:
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "position_ids":  # CLIP's only buffer
        t.copy_(torch.arange(t.shape[-1]).expand_as(t))
    elif leaf == "bias":
        t.zero_()
    elif t.dim() == 1:  # norm scales (and the like): identity
        t.fill_(1.0)
    else:
        gen = torch.Generator().manual_seed(_tensor_seed(seed, name))
        std = EMBEDDING_STD if "embedding" in name else t[0].numel() ** -0.5
        t.copy_(torch.randn(t.shape, generator=gen).mul_(std))


def random_models(config_dir: Path, seed: int, dtype: torch.dtype) -> dict[str, Any]:
    """The four models of `config_dir`, random-initialised in `dtype` on the CPU.

    Built on the meta device and materialised in `dtype` directly, so SDXL in fp16 never holds
    an fp32 copy (~14 GB); each tensor is filled from its own seeded stream."""
    from kxl.model.load import _meta_models

    models = _meta_models(Path(config_dir))
    for name in COMPONENTS:
        model = models[name].to(dtype).to_empty(device="cpu")
        known = {n for n, _ in model.named_buffers()} - {
            n for n in dict(model.named_buffers()) if n.endswith("position_ids")}
        if known:
            raise KxlError(f"{config_dir}/{name}: buffer {sorted(known)[0]} has no init rule")
        for pname, t in [*model.named_parameters(), *model.named_buffers()]:
            _fill(f"{name}.{pname}", t, seed)
        models[name] = model.eval()
    return models


def write_random_base(out: Path, config_dir: Path, seed: int, dtype: str = "fp16") -> dict:
    """Write `config_dir` and a random-init SDXL single file `out` (SGM layout, `dtype`), then
    load it back through the checked loader. Returns a short report."""
    import time

    from kxl.model.load import load_sdxl, save_sdxl_single_file

    if dtype not in DTYPES:
        raise KxlError(f"--dtype {dtype!r}: one of {sorted(DTYPES)}")
    start = time.perf_counter()
    write_config_dir(config_dir)
    models = random_models(config_dir, seed, DTYPES[dtype])
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    meta = {"kxl.stage": "base", "kxl.source": "random", "kxl.seed": str(seed),
            "modelspec.architecture": "stable-diffusion-xl-v1-base"}
    save_sdxl_single_file(SimpleNamespace(**models), out, meta)  # type: ignore[arg-type]
    del models
    written = time.perf_counter() - start
    loaded = load_sdxl(out, config_dir, dtype=DTYPES[dtype])  # header, load and tensor checks
    del loaded
    return {"params": params, "bytes": out.stat().st_size, "dtype": dtype,
            "write_s": round(written, 1), "total_s": round(time.perf_counter() - start, 1)}
