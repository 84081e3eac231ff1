"""Black-box saliency for a similarity: RISE and sliding-window occlusion (docs/methods.md, "Black-box saliency").

Both perturb one image, embed every perturbed copy (in batches, under ``torch.no_grad``) and score
it against the other image's *unperturbed* embedding. They need hundreds to thousands of forward
passes, so they show a ``tqdm.auto`` progress bar (``show_progress=``) and can be cancelled between
batches (``cancel=``: a callable returning True, or a ``threading.Event``). A cancelled run raises
:class:`ExplanationCancelled`, whose ``partial`` attribute holds the explanation from the batches
done so far (``info['cancelled'] = True``, ``info['passes_done']``): a cancelled run never looks
like a finished one, and the work done is not lost.

Maps are at the model's input pixel grid (H, W) — the display image's size — not at feature
resolution: the perturbations are defined on pixels.

The forward passes run on ONNX Runtime (CPU) when it is installed and its embeddings verified equal
to eager torch's (option ``accelerator``: 'auto', 'onnx' or 'eager'; ``adapters/accelerate.py``):
the maps equal the eager ones to ~1e-7, RISE with 2000 masks takes ~9 s instead of ~31 s on 2 cores.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..adapters import SimilarityModel, accelerate
from ..checks import InputError, InputTypeError, Option, SimvizError, check_float, check_floats
from ..images import PreparedImage
from .base import Explainer, PairExplanation, register_method, zero_embeddings
from .masks import RiseMasks, sliding_windows

__all__ = ["RISE", "SlidingWindow", "RiseMasks", "ExplanationCancelled", "sliding_windows"]

SIMILARITIES = ("cosine", "model")

# Perturbed batches are handed to the network channels-last: on CPU, oneDNN's convolutions (the
# depthwise ones especially) run faster on batches in that layout (benchmarks/bench_methods.py).
CHANNELS_LAST = True
# RISE makes its masks this many pixels at a time (80 masks of 224 x 224 at batch_size 8).
_MASK_CHUNK_PIXELS = 1 << 22


def _embed_batch(model: SimilarityModel, batch: torch.Tensor) -> torch.Tensor:
    if CHANNELS_LAST:
        batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():  # scores only: no autograd bookkeeping at all
        return model.embed_tensor(batch)


class ExplanationCancelled(RuntimeError):
    """The computation was cancelled; ``partial`` is the explanation from the work done so far."""

    def __init__(self, message: str, partial: PairExplanation):
        super().__init__(message)
        self.partial = partial


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _check_cancel(cancel, name):
    if cancel is not None and not (callable(cancel) or hasattr(cancel, "is_set")):
        raise InputTypeError(
            f"{name}={cancel!r} must be None, a callable returning True to stop, or a threading.Event"
        )
    return cancel


def _check_fill(fill, name) -> tuple[float, ...]:
    """One number or three (one per channel), finite, as a tuple of floats."""
    try:
        return (check_float(fill, name),) if np.ndim(fill) == 0 else check_floats(fill, name, length=3)
    except SimvizError:
        raise InputError(f"{name}={fill!r} must be a finite number or three numbers (one per channel), "
                         "in the model's normalised input space") from None


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is float16 / bfloat16: the perturbed scores differ by less than
    those dtypes resolve (a cosine rounded to 8 bits moves by 0.4%), so they are scored in float32."""
    return t.float() if t.is_floating_point() and torch.finfo(t.dtype).bits < 32 else t


def _scorer(model: SimilarityModel, similarity: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if similarity == "cosine":
        return lambda g, ref: F.cosine_similarity(at_least_float32(g), at_least_float32(ref).expand_as(g),
                                                  dim=-1, eps=1e-12)
    return lambda g, ref: model.score_embeddings(at_least_float32(g), at_least_float32(ref).expand_as(g))


class _PerturbationMethod(Explainer):
    """Common options, validation and the query / reference loop of RISE and sliding window."""

    common_options = {
        "both": Option.flag(False, "False: perturb the query only (reference map not computed, zeros); "
                                   "True: also explain the reference by perturbing it with the query fixed"),
        "similarity": Option.choice("cosine", "'cosine' (the paper) or 'model' (the model's own metric) for "
                                    "scoring", SIMILARITIES),
        "batch_size": Option.integer(8, "perturbed images per forward pass (CPU: small batches keep "
                                     "activations in cache)", minimum=1),
        "show_progress": Option.flag(True, "tqdm progress bar"),
        "cancel": Option.custom(None, "callable returning True, or a threading.Event, checked between "
                                "batches", lambda value, name: _check_cancel(value, name)),
        "accelerator": Option.choice("auto", "forward passes of the perturbed images: 'auto' = ONNX Runtime "
                                     "(CPU) when installed and verified equal to eager torch (float32 CPU "
                                     "models; exported once per model and image size, cached), else eager "
                                     "with a warning; 'onnx' = ONNX Runtime or an error; 'eager' = torch",
                                     accelerate.ACCELERATORS),
    }

    slow = True

    def passes(self, query_size, reference_size) -> int:
        """Forward passes (perturbed images) a run takes: the query's, plus the reference's with
        ``both=True``."""
        total = self._passes(tuple(query_size))
        return total + (self._passes(tuple(reference_size)) if self.config["both"] else 0)

    # Subclasses: forward passes needed for an image of a size, and the saliency of one image.
    def _passes(self, size: tuple[int, int]) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def _explain_image(self, model, x, other_embedding, score_fn, bar, cancel,
                       embed) -> tuple[torch.Tensor, dict, bool]:
        raise NotImplementedError  # pragma: no cover - interface

    def _embedder(self, model: SimilarityModel, size) -> Callable[[torch.Tensor], torch.Tensor]:
        """batch -> embeddings for perturbed images of ``size``, as the ``accelerator`` option says
        (adapters/accelerate.py); eager torch is :func:`_embed_batch`."""
        return accelerate.embedder(model, tuple(size), self.config["accelerator"],
                                   eager=lambda batch: _embed_batch(model, batch))

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        from tqdm.auto import tqdm

        both = self.config["both"]
        cancel = self.config["cancel"]
        score_fn = _scorer(model, self.config["similarity"])
        for label, prepared in (("query", query), ("reference", reference)):
            self._check_size(label, prepared.tensor.shape[-2:])
        with torch.no_grad():
            gq = model.embed_tensor(query.tensor)
            gr = model.embed_tensor(reference.tensor)
        score = float(model.score_embeddings(gq, gr)[0])
        total = self.passes(query.tensor.shape[-2:], reference.tensor.shape[-2:])
        info = dict(model.describe())
        info.update({k: v for k, v in self.config.items() if k not in ("cancel", "show_progress")})
        # Cosine of an all-zero embedding is undefined: score 0 and all-zero maps, as every method.
        zero = zero_embeddings(self.name, "cosine" if self.config["similarity"] == "cosine" else model.metric,
                               gq[0], gr[0])
        if zero:
            info["zero_embedding"] = zero
            return PairExplanation(
                method=self.name, score=0.0 if model.metric == "cosine" else score, query=query.display,
                reference=reference.display, query_map=np.zeros(query.tensor.shape[-2:], np.float32),
                reference_map=np.zeros(reference.tensor.shape[-2:], np.float32), signed=self.signed,
                metric=model.metric, info=info, missing_maps=() if both else ("reference",))
        info["map_resolution"] = "input pixels (H, W), the display image's size"
        info["perturbed"] = "query and reference, each with the other fixed" if both else "query only"
        info["cancelled"] = False
        # Maps are assembled on the CPU (numpy) whatever the model's device.
        maps = {"query": np.zeros(tuple(query.tensor.shape[-2:]), dtype=np.float64),
                "reference": np.zeros(tuple(reference.tensor.shape[-2:]), dtype=np.float64)}
        done_total = 0
        cancelled = False
        bar = tqdm(total=total, desc=self.name, unit="pass", disable=not self.config["show_progress"],
                   leave=False)
        try:
            jobs = [("query", query, gr)] + ([("reference", reference, gq)] if both else [])
            for label, prepared, other in jobs:
                embed = self._embedder(model, prepared.tensor.shape[-2:])
                saliency, details, cancelled = self._explain_image(
                    model, prepared.tensor, other, score_fn, bar, cancel, embed
                )
                details["forward_passes"] = embed.description
                info.setdefault("forward_passes", embed.description)
                maps[label] = saliency.numpy()
                info[label] = details
                done_total += details["passes_done"]
                if cancelled:
                    break
        finally:
            bar.close()
        if not both:
            info["reference"] = {"note": "not computed (both=False): the reference map is zeros"}
        info.setdefault("reference", {"note": "not computed (cancelled first): the reference map is zeros"})
        info["passes_done"] = done_total
        result = PairExplanation(
            method=self.name,
            score=score,
            query=query.display,
            reference=reference.display,
            query_map=maps["query"],
            reference_map=maps["reference"],
            signed=self.signed,
            metric=model.metric,
            info=info,
            missing_maps=() if "passes_done" in info["reference"] else ("reference",),
        )
        if cancelled:
            info["cancelled"] = True
            raise ExplanationCancelled(
                f"{self.name} was cancelled after {done_total} of {total} forward passes; the partial "
                "result is in the exception's .partial", result
            )
        return result

    def _check_size(self, label, size):
        """Subclasses: raise a clear error when an option does not fit the image size."""


@register_method("rise")
class RISE(_PerturbationMethod):
    """RISE saliency for a similarity, SANE's generator (Plummer, Vasileva, Petsiuk, Saenko,
    Forsyth, "Why do These Match? Explaining the Behavior of Image Similarity Models", ECCV 2020,
    arXiv 1905.10797; RISE: Petsiuk, Das, Saenko, BMVC 2018, arXiv 1806.07421).

    For masks M_n (see :class:`RiseMasks`: ``masks`` of them, ``grid`` x ``grid`` cells kept with
    probability ``keep``, seeded by ``seed``), the query is perturbed in normalised space,
    ``X_n = X * M_n`` (0 = the normalisation mean colour), scored ``s_n = cos(embed(X_n), g_Y)``
    with the reference embedding fixed ("query only", the paper's better variant), and
    ``saliency = sum_n s_n M_n / sum_n M_n`` at every input pixel.

    ``both=False`` (default): only the query is perturbed; the reference map is zeros (not
    computed; ``info['reference']`` says so). ``both=True``: the reference is explained the same way,
    perturbing Y (same mask parameters, at Y's size) against the fixed, unperturbed g_X — two
    separate "query only" explanations, twice the passes. The two images are never perturbed at
    the same time.

    Deviations: masks are upsampled with torch's bilinear interpolation (half-pixel centres, edge
    clamping) rather than scikit-image's reflect mode; ``similarity='model'`` scores with the
    model's own metric instead of cosine. Maps are at input resolution (H, W), signed=False (each
    pixel's value is the expected score when it is visible).
    """

    paper = ("Plummer et al. Why do These Match? Explaining the Behavior of Image Similarity Models. "
             "ECCV 2020 (arXiv 1905.10797); Petsiuk et al. RISE. BMVC 2018")
    signed = False
    options = {
        "masks": Option.integer(2000, "number of random masks", minimum=1),
        "grid": Option.integer(8, "cells per side of the binary grid", minimum=1),
        "keep": Option.number(0.5, "probability that a cell is kept", above=0.0, maximum=1.0),
        "seed": Option.integer(0, "seed of the masks", minimum=0),
        **_PerturbationMethod.common_options,
    }

    def _check_size(self, label, size):
        if self.config["grid"] > min(size):
            raise InputError(
                f"rise: grid={self.config['grid']} cells is finer than the {label} image "
                f"({size[0]}x{size[1]} px); use a grid of at most {min(size)}"
            )

    def _passes(self, size):
        return self.config["masks"]

    def masks_for(self, size: tuple[int, int]) -> RiseMasks:
        c = self.config
        return RiseMasks(c["masks"], tuple(size), grid=c["grid"], keep=float(c["keep"]), seed=c["seed"])

    def _explain_image(self, model, x, other_embedding, score_fn, bar, cancel, embed):
        masks = self.masks_for(x.shape[-2:])
        batch = self.config["batch_size"]
        # Masks are made a chunk of batches at a time (they do not depend on how they are grouped),
        # applied and summed in numpy (float64 sums), one thread, into reused buffers. With the
        # accelerator, batch n is embedded by pool threads while this thread makes batch n + 1 and
        # sums batch n - 1 (two input buffers, used in turn): benchmarks/bench_methods.py.
        H, W = masks.size
        chunk = batch * max(1, _MASK_CHUNK_PIXELS // (H * W * batch))
        image = x.detach().cpu().numpy()[0]  # masks are applied in numpy; the model moves batches to its device
        buffers = [np.empty((batch, 3, H, W), dtype=np.result_type(image.dtype, np.float32)) for _ in range(2)]
        num = np.zeros((H, W), dtype=np.float64)
        den = np.zeros((H, W), dtype=np.float64)
        term = np.empty((H, W), dtype=np.float64)
        scores = []

        def add(pending) -> None:
            handle, m = pending
            s = score_fn(handle.result(), other_embedding).double().cpu()
            # Mask by mask, in order, so the sums do not depend on the batch size.
            for mk, sk in zip(m, s.numpy().tolist()):
                np.multiply(mk, sk, out=term)
                np.add(num, term, out=num)
                np.add(den, mk, out=den)
            scores.append(s)
            bar.update(len(m))

        pending = None
        cancelled = False
        for n, start in enumerate(range(0, len(masks), batch)):
            if _is_cancelled(cancel):
                cancelled = True
                break
            if start % chunk == 0:
                crops = masks.crops(start, min(start + chunk, len(masks)))
            m = crops[start % chunk : start % chunk + batch]
            perturbed = buffers[n % 2][: len(m)]  # not in use: batch n - 2 was summed already
            for k, mk in enumerate(m):
                np.multiply(image, mk, out=perturbed[k])
            handle = embed.submit(torch.from_numpy(perturbed))
            if pending is not None:
                add(pending)
            pending = (handle, m)
        if pending is not None:
            add(pending)
        scores = torch.cat(scores) if scores else torch.from_numpy(np.zeros(0))
        num, den = torch.from_numpy(num), torch.from_numpy(den)
        saliency = torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))
        details = {"passes_done": int(scores.shape[0]), "mask_scores": scores.numpy(),
                   "mean_score": float(scores.mean()) if scores.numel() else float("nan")}
        return saliency, details, cancelled


@register_method("sliding_window")
class SlidingWindow(_PerturbationMethod):
    """Sliding-window occlusion saliency for a similarity, SANE's second generator (Plummer et al.,
    "Why do These Match?", ECCV 2020, arXiv 1905.10797; occlusion: Zeiler & Fergus, ECCV 2014).

    A square occluder of ``window`` pixels filled with ``fill`` (in normalised space: 0 is the
    normalisation mean colour; a float or one value per channel) moves over the query with
    ``stride`` (plus a last row / column flush with the far edge so every pixel is covered). For each
    window w, ``s_w = cos(embed(X occluded by w), g_Y)`` with the reference fixed, and
    ``saliency(x) = mean over windows covering x of (s_0 - s_w)``, s_0 the unoccluded score under
    the same similarity. Positive = covering the pixel lowers the similarity; signed.

    ``both`` as for RISE: False perturbs only the query (reference map zeros, not computed); True
    also explains the reference by occluding it against the fixed g_X.

    Deviations: the extra edge-flush windows (so no pixel is left without a value);
    ``similarity='model'`` scores with the model's own metric instead of cosine. Maps are at input
    resolution (H, W).
    """

    paper = ("Plummer et al. Why do These Match? Explaining the Behavior of Image Similarity Models. "
             "ECCV 2020 (arXiv 1905.10797)")
    signed = True
    options = {
        "window": Option.integer(32, "occluder side in input pixels", minimum=1),
        "stride": Option.integer(16, "step of the occluder in input pixels", minimum=1),
        "fill": Option.custom(0.0, "occluder value in normalised space (0 = mean colour), float or 3 per "
                              "channel", lambda value, name: _check_fill(value, name)),
        **_PerturbationMethod.common_options,
    }

    def _check_size(self, label, size):
        if self.config["window"] > min(size):
            raise InputError(
                f"sliding_window: window={self.config['window']} px is larger than the {label} image "
                f"({size[0]}x{size[1]} px)"
            )

    def _passes(self, size):
        return len(sliding_windows(tuple(size), self.config["window"], self.config["stride"]))

    def _explain_image(self, model, x, other_embedding, score_fn, bar, cancel, embed):
        H, W = x.shape[-2:]
        win = self.config["window"]
        positions = sliding_windows((H, W), win, self.config["stride"])
        batch = self.config["batch_size"]
        # The unoccluded score through the same forward pass as the windows' (eager or accelerated).
        base = float(score_fn(embed(x), other_embedding)[0])
        # Occluded on x's device (the prepared image's: the CPU); the model moves batches to its own.
        total = x.new_zeros((H, W), dtype=torch.float64)
        count = x.new_zeros((H, W), dtype=torch.float64)
        scores = []
        cancelled = False
        fill = torch.tensor(self.config["fill"], dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
        for start in range(0, len(positions), batch):
            if _is_cancelled(cancel):
                cancelled = True
                break
            chunk = positions[start : start + batch]
            occluded = x.repeat(len(chunk), 1, 1, 1)
            for k, (r, c) in enumerate(chunk):
                occluded[k, :, r : r + win, c : c + win] = fill
            s = score_fn(embed(occluded), other_embedding).double().cpu()
            for k, (r, c) in enumerate(chunk):
                total[r : r + win, c : c + win] += base - float(s[k])
                count[r : r + win, c : c + win] += 1
            scores.append(s)
            bar.update(len(chunk))
        scores = torch.cat(scores) if scores else torch.from_numpy(np.zeros(0))
        saliency = torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total)).cpu()
        details = {"passes_done": int(scores.shape[0]), "window_scores": scores.numpy(),
                   "positions": np.asarray(positions[: scores.shape[0]], dtype=np.int64).reshape(-1, 2),
                   "baseline_score": base}
        return saliency, details, cancelled
