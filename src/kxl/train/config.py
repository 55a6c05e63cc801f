"""The typed `train:` config section (config/config.yaml, config/epsilon.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kxl.errors import KxlError
from kxl.lokr.network import LokrSpec


@dataclass(frozen=True)
class RunResources:
    """How the rule launches training (torchrun processes, Snakemake resources); not used by
    the training math: the plan fixes the data layout whatever the process count.

    Processes per node: gpu / nodes when gpu > 0 (one per GPU), else nproc (CPU, gloo): on
    CPUs, `multinode` with nodes 2 and nproc 1 is 2 nodes x 1 rank.
    `standalone`: one node, `torchrun --standalone`; `multinode`: `srun` starts one torchrun
    per node, which meet through c10d rendezvous on the first node (rules/train.smk)."""

    nproc: int = 1
    gpu: int = 0
    cpus_per_gpu: int = 2
    mem_mb: int = 8000
    runtime: int = 60
    threads: int = 2
    launcher: Literal["standalone", "multinode"] = "standalone"
    nodes: int = 1

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise KxlError(f"config train.run: nodes {self.nodes} must be >= 1")
        if self.launcher == "standalone" and self.nodes != 1:
            raise KxlError(f"config train.run: nodes {self.nodes} needs launcher: multinode")
        if self.gpu % self.nodes:
            raise KxlError(
                f"config train.run: gpu {self.gpu} is not a multiple of nodes {self.nodes} "
                "(each node runs gpu / nodes processes)"
            )


@dataclass(frozen=True)
class CaptionAug:
    """Each sample's caption augmentation (kxl.captions.augment): shuffle the tags after the
    keep separator, then drop each with probability tag_dropout, seeded by the plan's
    sample_seed."""

    shuffle: bool
    tag_dropout: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.tag_dropout < 1.0:
            raise KxlError(f"config train.caption_tag_dropout: must be in [0, 1), got "
                           f"{self.tag_dropout}")


@dataclass(frozen=True)
class TrainConfig:
    lokr: LokrSpec
    run: RunResources = field(default_factory=RunResources)
    # Lion8bit (bitsandbytes); learning rates per parameter group.
    lr_unet: float = 2e-5
    lr_text_encoder: float = 5e-6
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    # constant with warmup; per_process = sd-scripts 0.8.7 (the scheduler is stepped once per
    # process per optimizer step, so warmup ends after warmup_steps / world_size steps).
    warmup_steps: int = 1000
    warmup_counting: Literal["per_process", "global"] = "per_process"
    min_snr_gamma: float | None = 5.0
    noise_offset: float = 0.0357
    max_grad_norm: float = 1.0
    # DDPM scaled-linear schedule of SDXL (sd-scripts' noise scheduler).
    beta_start: float = 0.00085
    beta_end: float = 0.012
    num_train_timesteps: int = 1000
    # Latent scale; None = the base VAE's own `scaling_factor` (vae/config.json), which diffusers
    # uses when sampling. A set value must agree with it (SDXL: 0.13025, sd-scripts' constant).
    vae_scale: float | None = None
    max_token_length: int = 225
    # sd-scripts --shuffle_caption / --caption_tag_dropout_rate (read as `caption`).
    caption_shuffle: bool = True
    caption_tag_dropout: float = 0.0
    # sd-scripts --mixed_precision. fp16: autocast + GradScaler on CUDA, with the frozen UNet and
    # text encoders in fp16; on a CPU it runs fp32 (CPU fp16 kernels are slow or missing). bf16:
    # autocast with the frozen UNet and text encoders in bf16 on any device, no loss scaler
    # (bf16 has fp32's range); it is how full-depth SDXL trains within a 24 GB CPU machine.
    # Either way the VAE stays fp32 (SDXL's overflows in fp16, sd-scripts' --no_half_vae) and the
    # LoKr's own weights fp32 (unless full_fp16).
    mixed_precision: Literal["fp16", "bf16", "no"] = "fp16"
    # sd-scripts --full_fp16: the trainable LoKr weights and their gradients in fp16 too, with
    # the loss scaler made to accept fp16 gradients (kxl.train.optim.FullFp16GradScaler). Needs
    # mixed_precision fp16; CUDA only, like mixed precision.
    full_fp16: bool = False
    # Recompute UNet and text-encoder activations in backward (sd-scripts'
    # --gradient_checkpointing): same math, far less activation memory. SDXL at 1024x1024,
    # batch 4 does not fit a 24 GB card (the original's RTX 3090s) without it.
    gradient_checkpointing: bool = False
    # per_sample: each sample's posterior sample, noise and timestep from (seed, step, its place
    # in the step), whoever computes it: any (W, A) with the same W*A gives the same losses, so a
    # checkpoint continues on another layout. per_rank: from (seed, step, plan rank, micro).
    # shared: sd-scripts 0.8.7 (the same stream on every rank).
    rng_streams: Literal["per_sample", "per_rank", "shared"] = "per_sample"
    checkpoint_steps: list[int] = field(default_factory=list)
    checkpoint_every: int = 0
    keep_last: int = 2
    max_steps: int | None = None
    tensorboard: bool = True
    # dtype of the final LoKr file (sd-scripts --save_precision). Checkpoints keep fp32 factors:
    # exact resume needs the trained values, not their rounding.
    save_precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    # Continue from a LoKr file in kohya / LyCORIS keys (e.g. the released step-13600 file):
    # its factors and norms are the start, training begins at plan step `init_step` with the
    # exact data order from there, and the optimizer starts fresh (Lion's momentum zero, the
    # warmup counted again from init_step). Only where no checkpoint of this run exists: a
    # checkpoint continues the run exactly. Keys, shapes or algorithm that do not match the
    # configured network stop the run with one line naming the first.
    init_lokr: str | None = None
    init_step: int = 0
    # Storage `none` (buckets.cache): processes that decode the plan's next micro-batches while
    # the current one trains (kxl.train.prefetch), each keeping `prefetch` micro-batches in
    # flight (memory: data_workers * prefetch decoded micro-batches per rank). 0 decodes inline
    # in the training process. Same bytes either way; pixel and latent caches ignore both.
    data_workers: int = 0
    prefetch: int = 2

    @property
    def caption(self) -> CaptionAug:
        return CaptionAug(self.caption_shuffle, self.caption_tag_dropout)

    def __post_init__(self) -> None:
        _ = self.caption  # CaptionAug checks caption_tag_dropout on load
        if self.init_step and self.init_lokr is None:
            raise KxlError(f"config train: init_step {self.init_step} needs init_lokr "
                           "(the LoKr file to continue from)")
        if self.data_workers < 0 or self.prefetch < 1:
            raise KxlError(f"config train: data_workers {self.data_workers} must be >= 0 and "
                           f"prefetch {self.prefetch} >= 1")
        if self.init_step < 0:
            raise KxlError(f"config train: init_step {self.init_step} must be >= 0")
        if self.full_fp16 and self.mixed_precision != "fp16":
            raise KxlError("config train: full_fp16 needs mixed_precision: fp16 "
                           "(sd-scripts refuses it too)")
