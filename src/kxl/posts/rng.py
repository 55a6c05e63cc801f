"""The two documented random streams of the posts stage (no global RNG anywhere).

sample:  numpy PCG64 seeded with SeedSequence([seed, STAGE_TAG, range_index]); the draws of
         a range are `Generator.permutation(population)[:count]`. A permutation prefix (rather
         than `Generator.choice(replace=False)`, which switches between Floyd's algorithm and
         a partial shuffle depending on count/population) is one fixed algorithm, and it nests:
         raising a count only appends draws, earlier draws never change. Each range has its own
         stream, so editing one range never changes another range's draws.
choices: Python's `random.Random(seed)` (MT19937, seeded like `random.seed(seed)`, i.e. like
         pytorch_lightning's `seed_everything(seed)`), one stream for the whole list.
         `random.choices(pop, k=k)` (no weights) draws `pop[floor(random() * n)]` k times, and
         `random()` is (a >> 5, b >> 6) of two 32-bit MT outputs -- the same formula numpy's
         MT19937 uses for doubles. So a numpy MT19937 started from the Python generator's
         state yields the same doubles, vectorised.
"""

from __future__ import annotations

import random

import numpy as np

# Keeps this stage's streams apart from other stages that derive generators from the run seed.
STAGE_TAG = 2


def sample_generator(seed: int, range_index: int) -> np.random.Generator:
    """The generator of one range in `sample` mode."""
    seq = np.random.SeedSequence([seed, STAGE_TAG, range_index])
    return np.random.Generator(np.random.PCG64(seq))


def sample_draws(seed: int, range_index: int, population: int, count: int) -> np.ndarray:
    """Indices into the id-sorted population: a uniformly random permutation's prefix."""
    return sample_generator(seed, range_index).permutation(population)[:count].astype(np.int64)


def python_random_generator(seed: int) -> np.random.Generator:
    """A numpy generator whose `random()` stream equals `random.Random(seed).random()`'s."""
    _, internal, _ = random.Random(seed).getstate()
    bits = np.random.MT19937()
    bits.state = {
        "bit_generator": "MT19937",
        "state": {"key": np.asarray(internal[:624], dtype=np.uint32), "pos": internal[624]},
    }
    return np.random.Generator(bits)


def choices_draws(gen: np.random.Generator, population: int, count: int) -> np.ndarray:
    """`random.choices(range(population), k=count)` on the stream of `gen`, vectorised.

    Consumes exactly the randomness that Python's `choices` does (two 32-bit words a draw).
    """
    # float(population) mirrors `n += 0.0` in CPython's choices: same product, same floor.
    return np.floor(gen.random(count) * float(population)).astype(np.int64)
