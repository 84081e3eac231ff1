"""``SimilarityTarget``: an embedding's similarity to a fixed reference, as a differentiable target.

Classifier-explanation libraries ask for a *target*: a callable turning the model's output into the
scalar to explain. For a similarity model the output is an embedding and the scalar is its similarity
to the other image's embedding, held fixed. With this target, pytorch-grad-cam's CAMs and Captum's
attributions explain a similarity instead of a class score:

>>> import torch
>>> target = SimilarityTarget(torch.tensor([1.0, 0.0]), metric="cosine")
>>> target(torch.tensor([[2.0, 0.0], [0.0, 3.0]])).tolist()
[1.0, 0.0]

pytorch-grad-cam calls the target once per image with a 1-D embedding (D,); Captum calls it on the
batch output (B, D) — both forms are accepted:

    from pytorch_grad_cam import GradCAM
    cam = GradCAM(model=embedding_module, target_layers=[layer])
    heat = cam(input_tensor=x, targets=[SimilarityTarget(reference_embedding)])

    from captum.attr import LayerGradCam
    attr = LayerGradCam(lambda x: SimilarityTarget(reference_embedding)(embedding_module(x)), layer)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..adapters import METRICS
from ..checks import InputError, InputTypeError, check_choice

__all__ = ["SimilarityTarget"]


class SimilarityTarget:
    """Similarity of embeddings to a fixed ``reference_embedding`` under ``metric``.

    ``reference_embedding``: (D,) or (1, D) tensor or array (copied and detached: no gradient flows
    into the reference). ``metric``: 'cosine' | 'dot' | 'euclidean' (similarity = -squared
    distance), the same definitions as :meth:`SimilarityModel.score_embeddings`.

    Calling it on an embedding (D,) gives a scalar; on a batch (B, D) it gives (B,).
    """

    def __init__(self, reference_embedding, metric: str = "cosine"):
        metric = check_choice(metric, "metric", METRICS)
        if isinstance(reference_embedding, np.ndarray):
            reference_embedding = torch.from_numpy(np.array(reference_embedding, copy=True))
        if not isinstance(reference_embedding, torch.Tensor):
            raise InputTypeError(
                "reference_embedding must be a torch tensor or numpy array of shape (D,) or (1, D), "
                f"got {type(reference_embedding).__name__}"
            )
        ref = reference_embedding.detach().clone()
        if ref.ndim == 2 and ref.shape[0] == 1:
            ref = ref[0]
        if ref.ndim != 1 or ref.shape[0] == 0:
            raise InputError(
                f"reference_embedding has shape {tuple(reference_embedding.shape)}; expected one "
                "embedding (D,) or (1, D)"
            )
        if not ref.is_floating_point():
            ref = ref.double()
        if not torch.isfinite(ref).all():
            raise InputError("reference_embedding contains NaN or infinite values")
        self.reference = ref
        self.metric = metric

    @classmethod
    def for_image(cls, model, image, *, metric: str | None = None) -> "SimilarityTarget":
        """Target whose reference is ``model``'s embedding of ``image`` (metric: the model's)."""
        with torch.no_grad():
            g = model.embed(image)[0]
        return cls(g, metric=metric or model.metric)

    def __call__(self, embedding: torch.Tensor) -> torch.Tensor:
        if not isinstance(embedding, torch.Tensor):
            raise InputTypeError(f"embedding must be a torch tensor, got {type(embedding).__name__}")
        if embedding.ndim not in (1, 2) or embedding.shape[-1] != self.reference.shape[0]:
            raise InputError(
                f"embedding has shape {tuple(embedding.shape)}; expected (D,) or (B, D) with "
                f"D = {self.reference.shape[0]} like the reference"
            )
        ref = self.reference.to(device=embedding.device, dtype=embedding.dtype)
        if self.metric == "cosine":
            return F.cosine_similarity(embedding, ref.expand_as(embedding), dim=-1, eps=1e-12)
        if self.metric == "dot":
            return (embedding * ref).sum(-1)
        return -((embedding - ref) ** 2).sum(-1)

    def __repr__(self) -> str:
        return f"SimilarityTarget(metric={self.metric!r}, dim={self.reference.shape[0]})"
