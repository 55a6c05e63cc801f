"""A stand-in for deepghs/ccip_onnx that can be built offline: same files, inputs and outputs.

The real CCIP models cannot be downloaded in the default run, so this module writes two small
ONNX graphs (built with the `onnx` helper API) under the same names, which imgutils then runs
unchanged. They know nothing about real anime characters: the feature model measures what the
synthetic characters of `kxl.images.render` are made of, so it is sensitive to them and only
to them:

- the image (imgutils: bilinear 384x384, CLIP mean/std) is de-normalised to RGB 0..255 and
  average-pooled 8x8 to 48x48;
- every pixel is softly assigned (softmax over -d^2 / 2 sigma^2) to the renderer's palette:
  the 12 fill/accent colours, the 6 pastel backgrounds, grey and white;
- features: the palette histogram of the whole image and of its central disk (fill and accent
  colours: who the character is), and shape moments of the fill-colour mass: four radial bands
  (ring vs disk) and the rotation-invariant magnitudes of its 3-, 4- and 5-fold angular
  harmonics (triangle, square/cross/diamond, star);
- the group-weighted feature vector is mapped to 768 dimensions by a fixed matrix with
  orthonormal columns (distances kept) and L2-normalised: output `output` [N, 768].

The metrics graph maps [N, 768] to the [N, N] difference ||a - b|| / 2 in [0, 1].
`metrics.json` holds the threshold that best separates same-character from different-character
pairs of 64 px renders (what the tiny model is trained on) - balanced accuracy over a fixed,
seeded set of synthetic characters; its calibration numbers are kept beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from kxl.images import render

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIZE, POOL = 384, 8
GRID = SIZE // POOL
SIGMA = 40.0  # RGB units: half the distance between the closest two palette colours, roughly
FEATURE_DIM = 768
N_FILLS = len(render.FILLS)
OPSET, IR_VERSION = 17, 9
# Group weights: colour identity dominates, shape refines (the tiny model learns colour first).
W_HIST, W_INNER, W_BANDS, W_HARM = 1.0, 1.5, 0.7, 0.7
FILES = ("model_feat.onnx", "model_metrics.onnx", "metrics.json", "cluster.json")


def palette() -> np.ndarray:
    """[K, 3] RGB: fills/accents, pastels, grey (no-character checkerboard), white frame."""
    extra = np.array([[128, 128, 128], [200, 200, 200], [255, 255, 255]], np.float32)
    return np.concatenate([render.FILLS, render.PASTELS, extra]).astype(np.float32)


def basis() -> np.ndarray:
    """[GRID*GRID, M] spatial weights: mean, central disk, 4 radial bands, cos/sin 3/4/5-fold."""
    c = (np.arange(GRID, dtype=np.float64) + 0.5) / GRID * 2.0 - 1.0
    v, u = np.meshgrid(c, c, indexing="ij")
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    disk = (r <= 0.8).astype(np.float64)
    cols = [np.full_like(r, 1.0), (r <= 0.6).astype(np.float64)]
    cols += [((r > lo) & (r <= lo + 0.2)).astype(np.float64) for lo in (0.0, 0.2, 0.4, 0.6)]
    for n in (3, 4, 5):
        cols += [np.cos(n * theta) * disk, np.sin(n * theta) * disk]
    b = np.stack([c_.reshape(-1) for c_ in cols], axis=1)
    return (b / GRID**2).astype(np.float32)  # means over the grid, not sums


def projection(dim_in: int, seed: int = 0) -> np.ndarray:
    """[dim_in, 768] with orthonormal columns' transpose: ||xQ|| == ||x|| for every x."""
    rng = np.random.Generator(np.random.PCG64(seed))
    q, _ = np.linalg.qr(rng.standard_normal((FEATURE_DIM, dim_in)))
    return q.T.astype(np.float32)


def feature_model() -> Any:
    """The ONNX feature graph (see the module doc)."""
    from onnx import TensorProto, helper, numpy_helper

    pal = palette()
    k, bas = len(pal), basis()
    m = bas.shape[1]
    dim = k + N_FILLS + 4 + 3
    consts = {
        "std255": np.array(CLIP_STD, np.float32).reshape(1, 3, 1, 1) * 255.0,
        "mean255": np.array(CLIP_MEAN, np.float32).reshape(1, 3, 1, 1) * 255.0,
        "pal_w": (pal / SIGMA**2).reshape(k, 3, 1, 1),
        "pal_b": (-(pal**2).sum(1) / (2 * SIGMA**2)).astype(np.float32),
        "shape_nkp": np.array([0, k, GRID * GRID], np.int64),
        "basis": bas,
        "ax1": np.array([1], np.int64),
        "proj": projection(dim),
        "eps": np.array(1e-12, np.float32),
    }
    nodes = [
        helper.make_node("Mul", ["input", "std255"], ["x0"]),
        helper.make_node("Add", ["x0", "mean255"], ["rgb"]),
        helper.make_node("AveragePool", ["rgb"], ["small"], kernel_shape=[POOL, POOL],
                         strides=[POOL, POOL]),
        # -|x - p|^2 / 2s^2 = x.p/s^2 - |p|^2/2s^2 - |x|^2/2s^2; the last term is constant per
        # pixel, so softmax over the palette ignores it: a 1x1 conv is the whole assignment.
        helper.make_node("Conv", ["small", "pal_w", "pal_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["soft"], axis=1),
        helper.make_node("Reshape", ["soft", "shape_nkp"], ["flat"]),
        helper.make_node("MatMul", ["flat", "basis"], ["mom"]),  # [N, K, M]
        *_slices("mom", k, m),
        helper.make_node("Concat", ["hist_w", "inner_w", "bands_w", "harm_w"], ["feat"], axis=1),
        helper.make_node("MatMul", ["feat", "proj"], ["proj_out"]),
        helper.make_node("Mul", ["proj_out", "proj_out"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "ax1"], ["ss"], keepdims=1),
        helper.make_node("Add", ["ss", "eps"], ["ss_eps"]),
        helper.make_node("Sqrt", ["ss_eps"], ["norm"]),
        helper.make_node("Div", ["proj_out", "norm"], ["output"]),
    ]
    consts.update(_slice_consts(k))
    graph = helper.make_graph(
        nodes, "kxl_ccip_standin_feat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", FEATURE_DIM])],
        [numpy_helper.from_array(np.asarray(v), name) for name, v in sorted(consts.items())],
    )
    return _model(graph)


def _slice_consts(k: int) -> dict[str, np.ndarray]:
    i64 = lambda *xs: np.array(xs, np.int64)  # noqa: E731
    return {
        "s_hist": i64(0, 0), "e_hist": i64(k, 1), "s_inner": i64(0, 1), "e_inner": i64(N_FILLS, 2),
        "s_fill": i64(0, 2), "e_fill": i64(N_FILLS, 12), "ax12": i64(1, 2), "ax_k": i64(1),
        "w_hist": np.array(W_HIST, np.float32), "w_inner": np.array(W_INNER, np.float32),
        "w_bands": np.array(W_BANDS, np.float32), "w_harm": np.array(W_HARM, np.float32),
        "ax_k2": i64(2), "ax_last": i64(2),
        "pairs_shape": i64(0, 3, 2), "bands_idx": i64(0, 1, 2, 3),
        "harm_idx": i64(4, 5, 6, 7, 8, 9),
    }


def _slices(mom: str, k: int, m: int) -> list[Any]:
    """Feature groups from the moments [N, K, M] (basis columns as in `basis`)."""
    from onnx import helper

    mk = helper.make_node
    return [
        mk("Slice", [mom, "s_hist", "e_hist", "ax12"], ["hist3"]),      # [N, K, 1] colour mean
        mk("Squeeze", ["hist3", "ax_k2"], ["hist"]),
        mk("Mul", ["hist", "w_hist"], ["hist_w"]),
        mk("Slice", [mom, "s_inner", "e_inner", "ax12"], ["inner3"]),   # [N, 12, 1] disk colours
        mk("Squeeze", ["inner3", "ax_k2"], ["inner"]),
        mk("Mul", ["inner", "w_inner"], ["inner_w"]),
        mk("Slice", [mom, "s_fill", "e_fill", "ax12"], ["fillm"]),      # [N, 12, 10] fill moments
        mk("ReduceSum", ["fillm", "ax_k"], ["fill"], keepdims=0),       # [N, 10] all fills
        mk("Gather", ["fill", "bands_idx"], ["bands"], axis=1),
        mk("Mul", ["bands", "w_bands"], ["bands_w"]),
        mk("Gather", ["fill", "harm_idx"], ["harm"], axis=1),           # [N, 6] cos/sin pairs
        mk("Reshape", ["harm", "pairs_shape"], ["pairs"]),              # [N, 3, 2]
        mk("Mul", ["pairs", "pairs"], ["pairs2"]),
        mk("ReduceSum", ["pairs2", "ax_last"], ["mag2"], keepdims=0),
        mk("Add", ["mag2", "eps"], ["mag2e"]),
        mk("Sqrt", ["mag2e"], ["mag"]),                                 # rotation invariant
        mk("Mul", ["mag", "w_harm"], ["harm_w"]),
    ]


def metrics_model() -> Any:
    """[N, 768] -> [N, N]: ||a - b|| / 2 from the Gram matrix of the L2-normalised rows."""
    from onnx import TensorProto, helper, numpy_helper

    consts = {"ax1": np.array([1], np.int64), "eps": np.array(1e-12, np.float32),
              "two": np.array(2.0, np.float32), "zero": np.array(0.0, np.float32),
              "half": np.array(0.5, np.float32)}
    mk = helper.make_node
    nodes = [
        mk("Mul", ["input", "input"], ["sq"]),
        mk("ReduceSum", ["sq", "ax1"], ["ss"], keepdims=1),
        mk("Add", ["ss", "eps"], ["sse"]),
        mk("Sqrt", ["sse"], ["norm"]),
        mk("Div", ["input", "norm"], ["unit"]),
        mk("Transpose", ["unit"], ["unit_t"], perm=[1, 0]),
        mk("MatMul", ["unit", "unit_t"], ["gram"]),
        mk("Mul", ["gram", "two"], ["g2"]),
        mk("Sub", ["two", "g2"], ["d2"]),         # |a - b|^2 = 2 - 2 a.b for unit a, b
        mk("Max", ["d2", "zero"], ["d2c"]),       # rounding can give -1e-7 on the diagonal
        mk("Sqrt", ["d2c"], ["d"]),
        mk("Mul", ["d", "half"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "kxl_ccip_standin_metrics",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", FEATURE_DIM])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", "N"])],
        [numpy_helper.from_array(np.asarray(v), name) for name, v in sorted(consts.items())],
    )
    return _model(graph)


def _model(graph: Any) -> Any:
    from onnx import checker, helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kxl-ccip-standin")
    model.ir_version = IR_VERSION
    checker.check_model(model)
    return model


def model_bytes() -> tuple[bytes, bytes]:
    """Serialised (feature, metrics) models; deterministic for a given onnx version."""
    return feature_model().SerializeToString(), metrics_model().SerializeToString()


def run_features(feat_onnx: bytes, images: np.ndarray) -> np.ndarray:
    """Features of uint8 RGB images [N, H, W, 3] through the model, preprocessed as imgutils."""
    import onnxruntime as ort
    from PIL import Image

    sess = ort.InferenceSession(feat_onnx, providers=["CPUExecutionProvider"])
    mean = np.array(CLIP_MEAN, np.float32)[:, None, None]
    std = np.array(CLIP_STD, np.float32)[:, None, None]
    batch = np.stack([
        (np.asarray(Image.fromarray(im).resize((SIZE, SIZE), Image.BILINEAR), np.float32)
         .transpose(2, 0, 1) / 255.0 - mean) / std
        for im in images
    ]).astype(np.float32)
    return sess.run(["output"], {"input": batch})[0]


def calibration_set(n_chars: int = 24, per_char: int = 6, size: int = 64, seed: int = 0) -> tuple[
        np.ndarray, np.ndarray]:
    """(uint8 images [N, size, size, 3], character labels [N]) of seeded synthetic renders."""
    names = [f"kxl_calibration_character_{i}" for i in range(n_chars)]
    ident = render.identities(render.name_hashes(names), np.ones(n_chars, bool))
    rng = np.random.Generator(np.random.PCG64(seed))
    series = render.series_colours(rng.integers(0, 2**63, n_chars, dtype=np.uint64),
                                   rng.random(n_chars) < 0.8)
    images, labels = [], []
    for c in range(n_chars):  # a few hundred renders at build time, not per post
        for j in range(per_char):
            post_rng = np.random.Generator(np.random.PCG64([seed, c, j]))
            img = render.render(size, size, ident, c, series[c], int(post_rng.integers(0, 4)),
                                post_rng)
            images.append(img.transpose(1, 2, 0))
            labels.append(c)
    return np.stack(images), np.array(labels)


def pair_differences(features: np.ndarray) -> np.ndarray:
    """The metrics graph in numpy: ||a - b|| / 2 of L2-normalised rows."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    return np.sqrt(np.maximum(2.0 - 2.0 * unit @ unit.T, 0.0)) / 2.0


def best_threshold(diff: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The threshold (<= is same) with the best balanced accuracy over all pairs i < j."""
    iu = np.triu_indices(len(labels), k=1)
    d, same = diff[iu].astype(np.float64), (labels[:, None] == labels[None, :])[iu]
    order = np.argsort(d, kind="stable")
    d, same = d[order], same[order]
    tpr = np.cumsum(same) / max(same.sum(), 1)        # same pairs at or below each candidate
    fpr = np.cumsum(~same) / max((~same).sum(), 1)
    best = int(np.argmax(tpr - fpr))
    thr = float((d[best] + d[min(best + 1, len(d) - 1)]) / 2.0)
    return {"threshold": thr, "balanced_accuracy": float((tpr[best] + 1.0 - fpr[best]) / 2.0),
            "same_mean": float(d[same].mean()), "different_mean": float(d[~same].mean()),
            "pairs": int(len(d))}


def build_files(model_name: str) -> dict[str, bytes]:
    """The four files of one model folder, calibrated on `calibration_set`."""
    feat, metrics = model_bytes()
    images, labels = calibration_set()
    cal = best_threshold(pair_differences(run_features(feat, images)), labels)
    thr = cal["threshold"]
    info = {"threshold": thr, "stand_in": True, "model": model_name, "calibration": cal,
            "note": "kxl stand-in for deepghs/ccip_onnx: palette/shape features of kxl's "
                    "synthetic characters, not the CCIP network"}
    cluster = {"dbscan_2": {"eps": 0.75 * thr, "min_samples": 2},
               "dbscan_free": {"eps": 0.75 * thr, "min_samples": 2},
               "optics": {"eps": thr, "min_samples": 5}}
    dump = lambda o: (json.dumps(o, indent=2, sort_keys=True) + "\n").encode()  # noqa: E731
    return {"model_feat.onnx": feat, "model_metrics.onnx": metrics,
            "metrics.json": dump(info), "cluster.json": dump(cluster)}


def write_cache(cache_dir: str | os.PathLike[str], repo_id: str, model_name: str) -> str:
    """Lay the stand-in out as an HF cache snapshot (refs/main -> commit); returns the commit.

    The commit id is a sha1 over the files' names and sha256s: same bytes, same snapshot.
    """
    from kxl.eval.hfcache import repo_folder

    files = build_files(model_name)
    h = hashlib.sha1()
    for name in sorted(files):
        h.update(f"{model_name}/{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    commit = h.hexdigest()
    root = repo_folder(cache_dir, repo_id)
    snap = root / "snapshots" / commit / model_name
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return commit
