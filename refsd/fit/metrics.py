"""Pose-error metrics for evaluating fits against known 3D joints."""

from __future__ import annotations

import numpy as np

__all__ = ["procrustes_align", "pa_mpjpe"]


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred (N, 3)`` aligned to ``gt (N, 3)`` by the best similarity transform (rotation,
    uniform scale, translation; no reflection)."""
    mx, my = pred.mean(0), gt.mean(0)
    X, Y = pred - mx, gt - my
    U, s, Vt = np.linalg.svd(X.T @ Y)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    scale = (s * np.diag(D)).sum() / (X**2).sum()
    return scale * X @ R + my


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint position error after Procrustes alignment (same unit as the inputs)."""
    return float(np.linalg.norm(procrustes_align(pred, gt) - gt, axis=1).mean())
