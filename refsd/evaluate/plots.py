"""The evaluation report's plots (matplotlib, drawn off-screen with the Agg canvas; pyplot and
its global state are never touched, so a host program's own backend is left alone):

* ``identity.png``: the histogram of face similarity photo vs output, with the threshold;
* ``pose_groups.png``: OKS and PCK@0.1 per joint group (output, and the avatars alone);
* ``attributes.png``: per attribute, the sampled counts beside the counts the requested
  distribution expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .attributes import natural_key

__all__ = ["write_plots"]


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _identity(s: Mapping[str, Any], sims: list[float], path: Path) -> Path:
    fig = _figure(6, 3.2)
    ax = fig.add_subplot()
    thr = s["identity"]["threshold"]
    ax.hist(sims, bins=[x / 20 for x in range(-10, 21)], color="#4c72b0", edgecolor="white")
    ax.axvline(thr, color="#c44e52", linestyle="--", label=f"same person at >= {thr:.3f}")
    ax.set_xlabel("face similarity, photo vs output (cosine, worst case)")
    ax.set_ylabel("faces")
    ax.set_xlim(-0.5, 1.0)
    ax.set_title(f"Identity: {s['identity']['leaks']} of {s['identity']['faces']} faces leak")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _pose(s: Mapping[str, Any], path: Path) -> Path:
    import numpy as np

    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    series = [(k, s[k]) for k in ("pose", "avatar_pose") if s.get(k)]
    groups = list(series[0][1]["groups"])
    x = np.arange(len(groups))
    width = 0.8 / (2 * len(series))
    colors = {"pose": ("#4c72b0", "#8fa9d4"), "avatar_pose": ("#55a868", "#9ccfa9")}
    for i, (name, p) in enumerate(series):
        label = "output" if name == "pose" else "avatars alone"
        for j, (metric, key) in enumerate((("OKS", "oks"), ("PCK@0.1", "pck_0.1"))):
            vals = [p["groups"][g][key] if p["groups"][g][key] is not None else 0.0 for g in groups]
            ax.bar(x + (2 * i + j - len(series) + 0.5) * width, vals, width, color=colors[name][j],
                   label=f"{label}: {metric}")
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (1 = same place)")
    ax.set_title("Pose kept, per joint group")
    ax.legend(fontsize=7, ncols=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _attributes(s: Mapping[str, Any], path: Path) -> Path:
    import numpy as np

    attrs = [(k, v) for k, v in s["attributes"].items() if v["n"]]
    cols = 3
    rows = (len(attrs) + cols - 1) // cols
    fig = _figure(4.2 * cols, 2.6 * rows)
    for i, (k, v) in enumerate(attrs):
        ax = fig.add_subplot(rows, cols, i + 1)
        cats = sorted(set(v["counts"]) | {c for c, e in (v.get("expected") or {}).items() if e > 0}, key=natural_key)
        x = np.arange(len(cats))
        ax.bar(x - 0.2, [v["counts"].get(c, 0) for c in cats], 0.4, color="#4c72b0", label="sampled")
        if v.get("expected"):
            ax.bar(x + 0.2, [v["expected"].get(c, 0) for c in cats], 0.4, color="#dd8452", label="expected")
        ax.set_xticks(x, cats, rotation=45, ha="right", fontsize=7)
        p = v.get("p_value")
        ax.set_title(f"{k}" + (f" (p = {p:.3g})" if p is not None else ""), fontsize=9)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_plots(summary: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """The plots there is data for, written into ``out_dir``; returns their paths."""
    out = []
    ident = summary.get("identity")
    if ident and ident.get("similarities"):
        out.append(_identity(summary, ident["similarities"], out_dir / "identity.png"))
    if summary.get("pose") or summary.get("avatar_pose"):
        out.append(_pose(summary, out_dir / "pose_groups.png"))
    if summary.get("attributes"):
        out.append(_attributes(summary, out_dir / "attributes.png"))
    return out
