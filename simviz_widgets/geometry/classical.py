"""A classical matcher to compare deep correspondences with: scikit-image's ORB keypoints and binary
descriptors, matched by mutual nearest Hamming distance (Rublee et al., "ORB: an efficient
alternative to SIFT or SURF", ICCV 2011)."""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2gray
from skimage.feature import ORB, match_descriptors

from ..checks import InputError, check_array, check_float, check_int
from .matches import Matches

__all__ = ["orb_matches"]


def _gray(image, name: str) -> np.ndarray:
    image = check_array(image, name, kinds="uif")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = rgb2gray(image[..., :3])
    elif image.ndim != 2:
        raise InputError(f"{name} image has shape {image.shape}; expected (H, W) or (H, W, 3)")
    image = image.astype(np.float64)
    return image / 255.0 if image.max() > 1.0 else image


def orb_matches(query, reference, *, n_keypoints: int = 500, max_ratio: float = 0.8,
                fast_threshold: float = 0.05) -> Matches:
    """ORB matches between two images ((H, W) or (H, W, 3) arrays): mutual nearest neighbours in
    Hamming distance with Lowe's ratio test ``max_ratio``. ``strength`` is 1 - the normalised
    Hamming distance (1 = identical descriptors). No keypoints (a flat image) gives no matches."""
    n_keypoints = check_int(n_keypoints, "n_keypoints", minimum=1)
    max_ratio = check_float(max_ratio, "max_ratio", above=0.0, maximum=1.0)
    fast_threshold = check_float(fast_threshold, "fast_threshold", above=0.0)
    images = (_gray(query, "query"), _gray(reference, "reference"))
    found = []
    for image in images:
        orb = ORB(n_keypoints=n_keypoints, fast_threshold=fast_threshold)
        try:
            orb.detect_and_extract(image)
        except RuntimeError:  # scikit-image raises when it finds no keypoint at all
            found.append((np.zeros((0, 2)), np.zeros((0, 256), bool)))
            continue
        found.append((orb.keypoints, orb.descriptors))
    (kq, dq), (kr, dr) = found
    sizes = images[0].shape, images[1].shape
    if len(kq) == 0 or len(kr) == 0:
        return Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), sizes[0], sizes[1],
                       info={"method": "orb"})
    pairs = match_descriptors(dq, dr, metric="hamming", cross_check=True, max_ratio=max_ratio)
    strength = 1.0 - np.mean(dq[pairs[:, 0]] != dr[pairs[:, 1]], axis=1)
    order = np.argsort(-strength, kind="stable")
    pairs = pairs[order]
    return Matches(kq[pairs[:, 0]], kr[pairs[:, 1]], strength[order], sizes[0], sizes[1],
                   info={"method": "orb", "n_keypoints": n_keypoints, "max_ratio": max_ratio})
