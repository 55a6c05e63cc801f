"""Per-sample seeds and per-epoch generators of the plan.

sample_seed(run_seed, epoch, post_id) = m(m(m(run_seed) ^ epoch) ^ post_id), with m the
splitmix64 output function (Steele, Lea, Flood 2014; the generator's golden-gamma increment
followed by its mixer), all arithmetic mod 2**64. It is a pure function of the three numbers, so
any tool can recompute the seed of any sample, and training derives that sample's caption
shuffle/dropout (`random.Random(sample_seed)`) and noise from it.
"""

from __future__ import annotations

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
# Distinguishes the plan's stream from any other use of the run seed (ASCII "plan").
PLAN_STREAM = 0x706C616E


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 output for each uint64 state in `x` (wrapping arithmetic, vectorised)."""
    z = np.asarray(x, dtype=np.uint64) + _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def sample_seeds(run_seed: int, epoch: int, post_ids: np.ndarray) -> np.ndarray:
    """uint64 seed per post for one epoch (see module doc for the formula)."""
    head = splitmix64(splitmix64(np.array([run_seed], dtype=np.uint64)) ^ np.uint64(epoch))
    return splitmix64(head ^ np.asarray(post_ids).astype(np.uint64))


def epoch_rng(run_seed: int, epoch: int) -> np.random.Generator:
    """The generator that orders one epoch (PCG64 from a SeedSequence over seed/stream/epoch)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([run_seed, PLAN_STREAM,
                                                                       epoch])))
