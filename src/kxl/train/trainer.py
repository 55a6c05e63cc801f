"""The training loop: collaborators named up front, one short loop over plan steps.

Every sample draws its VAE posterior sample, noise, noise offset and timestep from a generator
derived from (seed, step, its place in the step) (kxl.train.seeding; or one per micro-batch under
rng_streams per_rank / shared), so the run is a pure function of the plan position and a resume
from any checkpoint continues bit-identically on CPU.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kxl.config import to_dict
from kxl.train import fingerprint
from kxl.train.checkpoint import CheckpointManager, check_representable
from kxl.train.components import Adapter, DataPosition, RngState
from kxl.train.config import TrainConfig
from kxl.train.data import MicroBatch, PixelSource, PlanData
from kxl.train.dist import World, all_reduce_scalar, all_reduce_sum_, barrier
from kxl.train.metrics import MetricsLog
from kxl.train.schedule import LRSchedule

Augment = Callable[[str, int, bool, float], str]
# fingerprint key of a run whose warmup restarted at a continued checkpoint's step (its value)
WARMUP_RESTART = "resume.warmup_restarted_at"
WARMUPS = ("continue", "restart")
SAVE_DTYPES = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}  # torch dtype names


def resolve_vae_scale(configured: float | None, vae_config_scale: float) -> float:
    """train.vae_scale, or the VAE's own scaling_factor when unset; a mismatch is an error
    (training and sampling would disagree about the latent scale)."""
    from kxl.errors import KxlError

    if configured is None:
        return float(vae_config_scale)
    if abs(configured - vae_config_scale) > 1e-6 * abs(vae_config_scale):
        raise KxlError(f"config train.vae_scale={configured} disagrees with the base VAE's "
                       f"scaling_factor {vae_config_scale} (vae/config.json, used when sampling); "
                       "set train.vae_scale: null to use the VAE's")
    return float(configured)


@dataclass(frozen=True)
class TrainResult:
    steps_run: int
    last_step: int
    last_loss: float | None


@dataclass(frozen=True)
class Precision:
    """What train.mixed_precision means on a device: the autocast dtype (None: fp32), the dtype
    of the frozen UNet and text encoders, and whether a loss scaler runs (fp16 only)."""

    autocast: Any
    frozen: Any
    scaled: bool


def precision(mixed_precision: str, device_type: str) -> Precision:
    """sd-scripts' weight_dtype under --mixed_precision: fp16 on CUDA (CPUs run fp32: their fp16
    kernels are slow or missing), bf16 on any device, fp32 for `no`."""
    import torch

    if mixed_precision == "bf16":
        return Precision(torch.bfloat16, torch.bfloat16, False)
    if mixed_precision == "fp16" and device_type == "cuda":
        return Precision(torch.float16, torch.float16, True)
    return Precision(None, torch.float32, False)


def enable_gradient_checkpointing(models: Any) -> None:
    """Recompute activations of the UNet blocks and text-encoder layers in backward.

    Non-reentrant checkpoints: the frozen base gives the checkpointed segments no input that
    requires grad, which the reentrant form needs to reach the LoKr weights inside them.
    transformers checkpoints only modules in training mode; CLIP has no dropout, so train()
    changes nothing else."""
    models.unet.enable_gradient_checkpointing()
    for te in (models.text_encoder, models.text_encoder_2):
        # transformers >= 5.x renames the method; both take the torch.utils.checkpoint kwargs
        if hasattr(te, "activation_checkpointing_enable"):
            te.activation_checkpointing_enable({"use_reentrant": False})
        else:
            te.gradient_checkpointing_enable({"use_reentrant": False})
        te.train()


class Trainer:
    def __init__(
        self,
        models: Any,
        data: PlanData,
        pixels: PixelSource,
        cfg: TrainConfig,
        seed: int,
        out_dir: Path,
        world: World,
        augment: Augment,
        inputs: dict[str, str] | None = None,
    ) -> None:
        import torch

        from kxl.lokr.network import build_network
        from kxl.model.diffusion import alphas_cumprod, snr
        from kxl.train.optim import build_lion8bit, grad_scaler
        from kxl.train.seeding import derive_seed, set_deterministic

        self.m, self.data, self.pixels, self.cfg, self.seed = models, data, pixels, cfg, seed
        self.world, self.augment, self.out_dir = world, augment, out_dir
        # sha256 of every input file that shapes the run (base, captions, pixels...): a
        # checkpoint continues only the run whose inputs hash the same
        self.inputs = dict(inputs or {})
        set_deterministic(seed)
        self.precision = precision(cfg.mixed_precision, world.device.type)
        self.fp16 = self.precision.scaled
        # sd-scripts' weight_dtype: the frozen UNet and text encoders in the 16-bit dtype under
        # mixed precision; the VAE in fp32 (SDXL's VAE overflows in fp16: --no_half_vae)
        for mod in (models.unet, models.text_encoder, models.text_encoder_2, models.vae):
            mod.requires_grad_(False)
            mod.to(world.device,
                   self.precision.frozen if mod is not models.vae else torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "lokr-init"))
            net = build_network(cfg.lokr, [models.text_encoder, models.text_encoder_2], models.unet)
        # under full_fp16 the LoKr's own weights (and so their gradients) are fp16 as well
        net.to(world.device, torch.float16 if self.fp16 and cfg.full_fp16 else torch.float32)
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(models)
        self.adapter = Adapter(net, models.unet, [models.text_encoder, models.text_encoder_2])
        groups = self.adapter.param_groups(cfg.lr_text_encoder, cfg.lr_unet)
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = build_lion8bit(groups, cfg.betas, cfg.weight_decay)
        self.schedule = LRSchedule(
            self.optimizer,
            [cfg.lr_text_encoder, cfg.lr_unet],
            cfg.warmup_steps,
            data.layout.world_size,
            cfg.warmup_counting,
        )
        self.scaler = grad_scaler("cuda", self.fp16, cfg.full_fp16)
        self.position, self.rng = DataPosition(), RngState()
        self.resumed = False  # set when a checkpoint is loaded (then init_lokr does not apply)
        acp = alphas_cumprod(cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps)
        self.acp, self.snr = acp.to(world.device), snr(acp).to(world.device)
        self.ckpt = CheckpointManager(out_dir / "checkpoints", cfg.keep_last, cfg.checkpoint_steps)
        # the step budget: the plan's steps, or fewer under train.max_steps
        self.end = data.num_steps if cfg.max_steps is None else min(cfg.max_steps, data.num_steps)
        self.settings = fingerprint.settings(to_dict(cfg), seed)
        # the layout: only W*A decides the math when each sample's randomness is keyed by its
        # place in the step and the warmup counts optimizer steps; under per_rank / shared
        # streams or a per_process warmup the plan's W does too
        layout = data.layout
        self.settings["plan.micros_per_step"] = layout.micros_per_step
        per_process_warmup = cfg.warmup_counting == "per_process" and cfg.warmup_steps > 0
        if cfg.rng_streams != "per_sample" or per_process_warmup:
            self.settings["plan.world_size"] = layout.world_size
        self.vae_scale = resolve_vae_scale(cfg.vae_scale, models.vae.config.scaling_factor)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data": self.position.state_dict(),
            "rng": self.rng.state_dict(),
        }

    def init_from_lokr(self, log: Callable[[str], None]) -> None:
        """train.init_lokr: the adapter from a kohya-keyed LoKr file, training from plan step
        init_step with a fresh optimizer and schedule (see TrainConfig). Called only when no
        checkpoint was resumed."""
        from safetensors.torch import load_file

        from kxl.errors import KxlError

        path, start = self.cfg.init_lokr, self.cfg.init_step
        if path is None:
            return
        if start >= self.end:
            raise KxlError(f"config train: init_step {start} is not before the run's last step "
                           f"({self.end} step(s))")
        if not Path(path).is_file():
            raise KxlError(f"{path}: train.init_lokr does not exist")
        state = load_file(path)  # safetensors only: never a pickle
        self.adapter.check_state(state, path)
        self.adapter.load_state_dict(state)
        self.position.next_step = start
        log(f"initialised the LoKr from {path}; training from plan step index {start} with a "
            "fresh optimizer")

    def load(self, path: Path) -> None:
        self.resumed = True
        lokr, state, meta = self.ckpt.load(path)
        self.adapter.load_state_dict(lokr)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.position.load_state_dict(state["data"])
        self.rng.load_state_dict(state["rng"])

    def mismatch(self, meta: dict[str, Any], settings: dict[str, Any] | None = None) -> str | None:
        """Why a checkpoint with `meta` cannot continue this run (None: it can).

        Its fingerprint (kxl.train.fingerprint: math-deciding settings, input files, the plan
        rows it consumed) must be this run's (`settings`: this run's, unless given), and its
        position inside the step budget."""
        if "settings" not in meta:
            return "made by an older kxl that recorded no run fingerprint"
        problem = fingerprint.settings_mismatch(meta["settings"], settings or self.settings)
        problem = problem or fingerprint.inputs_mismatch(meta.get("inputs") or {}, self.inputs)
        if problem:
            return problem
        nxt = int(meta.get("next_step", -1))
        if not 0 <= nxt <= self.end:
            return f"its position {nxt} is outside this run's budget of {self.end} step(s)"
        if meta.get("plan_prefix_sha256") != self.data.prefix_hash(nxt):
            return f"made with a different plan (its first {nxt} step(s) differ)"
        return None

    def save(self) -> None:
        nxt = self.position.next_step
        meta = {
            "config": to_dict(self.cfg),  # for people; the resume check reads `settings`
            "settings": self.settings,
            "seed": self.seed,
            "next_step": nxt,
            "plan_world_size": self.data.layout.world_size,
            "plan_prefix_sha256": self.data.prefix_hash(nxt),
            "inputs": self.inputs,
        }
        if self.world.main:
            self.ckpt.save(nxt, self.adapter.state_dict(), self.state_dict(), meta)
        barrier(self.world)

    def resume(self, how: str, log: Callable[[str], None]) -> None:
        """`none`; a checkpoint directory (it must belong to this run, else KxlError); or
        `auto`: the newest valid checkpoint in out-dir (corrupt ones named and skipped).

        Under `auto` only the newest valid checkpoint inside the step budget is a candidate;
        those past the budget (max_steps lowered, a shorter plan) are moved, not deleted, to
        out-dir/superseded/. A candidate of another run (Snakemake reruns training after an
        input or the config changed) is not resumed: the whole checkpoints folder is moved there
        and training starts at step 0. A preempted job restarts with the same inputs, so it
        resumes."""
        from kxl.errors import KxlError

        if how == "none":
            return
        if how == "auto":
            past = [c for c in self.ckpt.list() if c.step > self.end]
            ck = self.ckpt.latest_valid(warn=log, at_most=self.end)
            problem = self.mismatch(self.ckpt.meta(ck.path)) if ck else None
            barrier(self.world)  # every rank has decided before rank 0 moves folders
            if self.world.main and problem:
                dest = self.ckpt.supersede(self.out_dir / "superseded")
                log(f"{ck.path}: {problem}; not this run's checkpoint, moved the "
                    f"checkpoints to {dest}, starting at step 0")
            elif self.world.main and past:
                dest = self.ckpt.supersede(self.out_dir / "superseded", [c.step for c in past])
                log(f"{len(past)} checkpoint(s) past this run's budget of {self.end} step(s) "
                    f"(newest {past[-1].path.name}) moved to {dest}")
            barrier(self.world)
            if ck is None or problem:
                return
            path = ck.path
        else:
            path = Path(how)
            problem = self.mismatch(self.ckpt.meta(path))
            if problem:
                raise KxlError(f"{path}: checkpoint {problem}; resume the run it belongs to, "
                               "or use --resume auto / none to start over")
        self.load(path)
        log(f"resumed from {path} at plan step index {self.position.next_step}")

    def continue_run(self, path: Path, warmup: str, log: Callable[[str], None]) -> None:
        """`kxl train --continue-from`: a crash scenario (kxl.audit.crash) continues another
        run's checkpoint at step k over its own plan, which must hold the same rows before k.

        The checkpoint's fingerprint must be this run's: every math setting, every input file and
        the plan rows of steps < k (so only the data from k on may differ). `warmup` restart:
        the warmup counts again from k (`LRSchedule.warmup_from`), part of this run's
        fingerprint from then on; `continue`: the checkpoint's schedule goes on. The first call
        loads `path` and writes it again as this run's own checkpoint k; a rerun (preemption)
        resumes this run's newest checkpoint instead."""
        from kxl.errors import KxlError

        if self.cfg.init_lokr is not None:
            raise KxlError("kxl train: --continue-from and train.init_lokr exclude each other "
                           "(one start point)")
        if not path.is_dir():
            raise KxlError(f"{path}: no checkpoint to continue from (the run keeps the steps of "
                           "train.checkpoint_steps)")
        meta = self.ckpt.meta(path)
        problem = self.mismatch(meta)
        if problem:
            raise KxlError(f"{path}: cannot continue from this checkpoint: {problem}")
        k = int(meta["next_step"])
        if warmup == "restart":
            self.settings[WARMUP_RESTART] = k
        self.resume("auto", log)
        if self.resumed:
            return
        self.load(path)
        if warmup == "restart":
            self.schedule.warmup_from = k
        self.save()
        log(f"continued from {path} at plan step index {k} (warmup: {warmup})")

    @contextlib.contextmanager
    def read_ahead(self, start: int) -> Iterator[None]:
        """Under train.data_workers > 0 with storage `none`: this process's micro-batches from
        step index `start` to the budget's end are decoded ahead in worker processes while
        steps train (kxl.train.prefetch); the pool is shut down on leaving, normally or not.
        Pixel and latent caches are read inline: a slice of a file is cheap."""
        from kxl.train.data import DecodedImages
        from kxl.train.prefetch import ReadAhead

        inline = self.pixels
        if not (self.cfg.data_workers and isinstance(inline, DecodedImages)):
            yield
            return
        requests = self.data.requests(start, self.end)
        with ReadAhead(inline, requests, self.cfg.data_workers, self.cfg.prefetch) as ahead:
            self.pixels = ahead
            try:
                yield
            finally:
                self.pixels = inline

    # -- one step ----------------------------------------------------------------------------
    def micro_loss(self, mb: MicroBatch) -> Any:
        import torch
        import torch.nn.functional as F

        from kxl.model.diffusion import (
            add_noise,
            draw_noise,
            draw_noise_per_sample,
            min_snr_weight,
            predict,
        )
        from kxl.train.seeding import micro_generator, sample_generators
        from kxl.train.text import encode, tokenize

        dev, cfg = self.world.device, self.cfg
        if cfg.rng_streams == "per_sample":
            position = mb.micro * self.data.layout.world_size + mb.rank
            gens = sample_generators(self.seed, mb.step, position, len(mb.post_ids), dev)
            latents = self.latents(mb, gens)
            noise, t = draw_noise_per_sample(
                tuple(latents.shape), cfg.noise_offset, cfg.num_train_timesteps, gens
            )
        else:
            gen = micro_generator(
                self.seed, mb.step, mb.rank, mb.micro, cfg.rng_streams == "shared", dev
            )
            latents = self.latents(mb, [gen])
            noise, t = draw_noise(
                tuple(latents.shape), cfg.noise_offset, cfg.num_train_timesteps, gen
            )
        noisy = add_noise(latents, noise, self.acp, t)
        aug = cfg.caption
        caps = [
            self.augment(c, int(s), aug.shuffle, aug.tag_dropout)
            for c, s in zip(mb.captions, mb.sample_seeds, strict=True)
        ]
        ids1 = tokenize(caps, self.m.tokenizer, cfg.max_token_length).to(dev)
        ids2 = tokenize(caps, self.m.tokenizer_2, cfg.max_token_length).to(dev)
        time_ids = torch.from_numpy(mb.time_ids).to(dev)
        amp = (torch.autocast(dev.type, self.precision.autocast) if self.precision.autocast
               else contextlib.nullcontext())
        with amp:
            ctx, pooled = encode(ids1, ids2, self.m.text_encoder, self.m.text_encoder_2)
            pred = predict(self.m.unet, noisy, t, ctx, pooled, time_ids)
        loss = F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=[1, 2, 3])
        if cfg.min_snr_gamma:
            loss = loss * min_snr_weight(self.snr[t], cfg.min_snr_gamma)
        return loss.mean()

    def latents(self, mb: MicroBatch, gens: list[Any]) -> Any:
        """Scaled VAE latents of the micro-batch: one posterior sample drawn from `gens` (its
        first draw: one generator for the micro-batch, or one per sample), encoded now from
        pixels or read from a latents cache. Both draw the same randn from each generator, so
        everything drawn after it is the same whichever storage is used."""
        import torch

        from kxl.model.vae import Posterior, encode_posterior, sample_posterior

        dev = self.world.device
        got = self.pixels.get(mb.bucket, mb.post_ids)
        post = got if isinstance(got, Posterior) else encode_posterior(self.m.vae, got.to(dev))
        post = Posterior(post.mean.to(dev, torch.float32), post.std.to(dev, torch.float32))
        if len(gens) == 1:
            return sample_posterior(post, gens[0]) * self.vae_scale
        rows = [sample_posterior(Posterior(post.mean[i : i + 1], post.std[i : i + 1]), g)
                for i, g in enumerate(gens)]
        return torch.cat(rows) * self.vae_scale

    def step(self, index: int) -> dict[str, Any]:
        import torch

        step = int(self.data.steps[index])
        t0 = time.perf_counter()
        micro = self.data.micro_batches(step)
        total, loss_sum = self.data.layout.micros_per_step, 0.0
        for mb in micro:
            loss = self.micro_loss(mb) / total
            self.scaler.scale(loss).backward()
            loss_sum += float(loss.detach())
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        all_reduce_sum_([p.grad for p in self.params], self.world)
        loss_all = all_reduce_scalar(loss_sum, self.world)
        self.scaler.unscale_(self.optimizer)
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        lrs = self.schedule.apply()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step += 1
        self.position.next_step = index + 1
        n_img = total * self.data.layout.batch_size
        return {
            "step": step,
            "loss": loss_all,
            "lr_text_encoder": lrs[0],
            "lr_unet": lrs[1],
            "grad_norm": float(gnorm),
            "scaler_scale": float(self.scaler.get_scale()),
            "images_per_s": n_img / (time.perf_counter() - t0),
            "rows_hash": self.data.rows_hash(step),
        }

    def due(self, position: int) -> bool:
        every = self.cfg.checkpoint_every
        return position in self.cfg.checkpoint_steps or bool(every and position % every == 0)


def run(
    trainer: Trainer, resume: str, lokr_out: Path, log: Callable[[str], None] = print,
    continue_from: Path | None = None, warmup: str = "continue",
) -> TrainResult:
    """Resume (or continue another run's checkpoint: Trainer.continue_run), train to the end of
    the plan (or max_steps), write the final kohya-keyed LoKr. The main process holds the
    out-dir's training lock throughout (kxl.train.lock)."""
    from kxl.errors import KxlError
    from kxl.train.lock import training_lock

    if warmup not in WARMUPS:
        raise KxlError(f"kxl train: warmup {warmup!r}: one of {list(WARMUPS)}")
    if warmup != "continue" and continue_from is None:
        raise KxlError(f"kxl train: --warmup {warmup} needs --continue-from (the checkpoint "
                       "whose step the warmup restarts at)")
    with training_lock(trainer.out_dir) if trainer.world.main else contextlib.nullcontext():
        return _run_locked(trainer, resume, lokr_out, log, continue_from, warmup)


def _run_locked(
    trainer: Trainer, resume: str, lokr_out: Path, log: Callable[[str], None],
    continue_from: Path | None = None, warmup: str = "continue",
) -> TrainResult:
    if continue_from is not None:
        trainer.continue_run(continue_from, warmup, log)
    else:
        trainer.resume(resume, log)
    if not trainer.resumed:
        trainer.init_from_lokr(log)
    cfg, end = trainer.cfg, trainer.end
    start = trainer.position.next_step
    metrics = MetricsLog(trainer.out_dir, start, cfg.tensorboard) if trainer.world.main else None
    progress = Progress(start, end, log if trainer.world.main else None)
    row: dict[str, Any] = {}
    with trainer.read_ahead(start):
        for index in range(start, end):
            row = trainer.step(index)
            if metrics is not None:
                metrics.log(row)
            if trainer.due(index + 1):
                trainer.save()
            progress.update(index + 1, row)
    if metrics is not None:
        metrics.finish()
    if trainer.world.main:
        write_lokr(trainer, lokr_out)
    return TrainResult(end - start, end, row.get("loss"))


class Progress:
    """A log line at most every `every_s` seconds and at the end: step, loss, speed, ETA (a
    12-day run must show it is alive without opening metrics.csv)."""

    def __init__(self, start: int, end: int, log: Callable[[str], None] | None,
                 every_s: float = 30.0) -> None:
        self.start, self.end, self.log, self.every_s = start, end, log, every_s
        self.t0 = self.last = time.monotonic()

    def update(self, done: int, row: dict[str, Any]) -> None:
        now = time.monotonic()
        if self.log is None or (now - self.last < self.every_s and done < self.end):
            return
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        eta = (self.end - done) / rate if rate else float("inf")
        self.log(f"step {done}/{self.end}: loss {row['loss']:.4f}, "
                 f"{row['images_per_s']:.1f} img/s, {rate * 3600:.0f} steps/h, "
                 f"eta {eta / 3600:.1f} h")


def write_lokr(trainer: Trainer, path: Path) -> None:
    """The final adapter in kohya keys with the metadata sd-webui / ComfyUI read.

    Written by kxl's byte-deterministic writer (sorted keys and metadata): safetensors'
    `save_file` orders metadata through a randomly seeded hash map, so two runs that agree on
    every value could still write different bytes."""
    import json

    import torch

    from kxl.model.st_io import save_streaming

    cfg = trainer.cfg
    meta = {
        "ss_network_module": "lycoris.kohya",
        "ss_network_dim": str(cfg.lokr.dim),
        "ss_network_alpha": str(cfg.lokr.alpha),
        "ss_network_args": json.dumps(
            {
                "algo": "lokr",
                "factor": cfg.lokr.factor,
                "conv_dim": cfg.lokr.conv_dim,
                "conv_alpha": cfg.lokr.conv_alpha,
                "train_norm": cfg.lokr.train_norm,
                "preset": Path(cfg.lokr.preset).name,
            }
        ),
        "kxl_train_config": json.dumps(to_dict(cfg), sort_keys=True),
        "kxl_seed": str(trainer.seed),
        "kxl_steps": str(trainer.position.next_step),
        "kxl_save_precision": cfg.save_precision,
    }
    # `+ 0.0` turns -0.0 into +0.0: runs that agree on every value can still differ in the sign
    # of a zero (seen between a local and a SLURM run), which would change the file's bytes.
    sd = {k: (v + 0.0 if v.is_floating_point() else v).contiguous()
          for k, v in trainer.adapter.state_dict().items()}
    dtype = SAVE_DTYPES[cfg.save_precision]
    check_representable(sd, cfg.save_precision, path)
    save_streaming(sd, path, meta, getattr(torch, dtype) if dtype else None)

