"""The report's figures (matplotlib, Agg backend), laid out like the paper's psi and phi figures.

* ``psi.png``: mean answer with its 95 % CI for psi-A (privacy), psi-B (pose), psi-C (realism and
  satisfaction, and its two aspects), on the 1-5 scale, n under each bar.
* ``phi.png``: the same per requested attribute, all attributes first.
* ``likert.png``: the share of each answer 1-5 per family (stacked bars).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .definition import FAMILY_ORDER
from .questions import PHI_LABELS

__all__ = ["write_plots"]

COLORS = {"psi_a": "#7b5ea7", "psi_b": "#3d7ab8", "psi_c": "#3a9a6a", "phi": "#d08a2e"}
LIKERT_COLORS = ("#c0504d", "#e6a19a", "#c8c8c8", "#9cc3e4", "#2f6fb3")
SHORT = {"psi_a": "ψ-A\nprivacy", "psi_b": "ψ-B\npose", "psi_c": "ψ-C\nrealism +\nsatisfaction", "phi": "φ\nattributes"}


def _bars(ax, labels: list[str], stats: list[dict[str, Any]], colors: list[str], horizontal: bool = False) -> None:
    """Mean bars from 1 with the 95 % CI (clipped to the 1-5 scale); n and the mean in the tick labels."""
    pos = list(range(len(labels)))
    means = [s["mean"] if s["mean"] is not None else 1.0 for s in stats]
    lo = [max(1.0, s["ci_low"]) if s["ci_low"] is not None else m for s, m in zip(stats, means, strict=True)]
    hi = [min(5.0, s["ci_high"]) if s["ci_high"] is not None else m for s, m in zip(stats, means, strict=True)]
    err = [[m - a for m, a in zip(means, lo, strict=True)], [b - m for m, b in zip(means, hi, strict=True)]]
    ticks = [f"{lab}\nn={s['n']}" + (f", mean {s['mean']:.2f}" if s["mean"] is not None else "")
             for lab, s in zip(labels, stats, strict=True)]
    if horizontal:
        ax.barh(pos, [m - 1 for m in means], left=1, xerr=err, color=colors, capsize=3, height=0.6)
        ax.set_yticks(pos, [t.replace("\n", "  (") + ")" for t in ticks], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(1, 5)
        ax.set_xticks([1, 2, 3, 4, 5])
        ax.grid(axis="x", alpha=0.3)
    else:
        ax.bar(pos, [m - 1 for m in means], bottom=1, yerr=err, color=colors, capsize=4, width=0.6)
        ax.set_xticks(pos, ticks, fontsize=8)
        ax.set_ylim(1, 5)
        ax.set_yticks([1, 2, 3, 4, 5])
        ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def write_plots(summary: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> dict[str, str]:
    """Write the three figures into ``out``; returns name -> file name."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fam, asp = summary["families"], summary["aspects"]
    files = {}

    labels, stats, colors = [], [], []
    for f in ("psi_a", "psi_b", "psi_c"):
        labels.append(SHORT[f])
        stats.append(fam[f])
        colors.append(COLORS[f])
    for a, s in asp["psi_c"].items():
        labels.append(f"ψ-C\n{a}")
        stats.append(s)
        colors.append("#8fcaa9")
    fig, ax = plt.subplots(figsize=(7.4, 3.8), dpi=110)
    _bars(ax, labels, stats, colors)
    ax.set_ylabel("mean answer (1 = strongly disagree,\n5 = strongly agree), 95 % CI (within 1-5)", fontsize=8)
    ax.set_title("ψ: privacy (lower is better), pose, realism and satisfaction", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "psi.png")
    plt.close(fig)
    files["psi"] = "psi.png"

    labels = ["all attributes"] + [PHI_LABELS.get(a, a) for a in asp["phi"]]
    stats = [fam["phi"]] + list(asp["phi"].values())
    fig, ax = plt.subplots(figsize=(7.4, 1.0 + 0.36 * len(labels)), dpi=110)
    _bars(ax, labels, stats, [COLORS["phi"]] + ["#ebc08a"] * (len(labels) - 1), horizontal=True)
    ax.set_xlabel("mean answer: 'this person looks ...' (1 = strongly disagree, 5 = strongly agree), 95 % CI (within 1-5)",
                  fontsize=8)
    ax.set_title("φ: attribute fidelity", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "phi.png")
    plt.close(fig)
    files["phi"] = "phi.png"

    excluded = {r["rater"] for r in summary["raters"] if r["flagged"]} if summary["exclude_flagged"] else set()
    fig, ax = plt.subplots(figsize=(7.0, 2.6), dpi=110)
    names = list(FAMILY_ORDER)
    for k, f in enumerate(names):
        vals = [r["value"] for r in rows if r["family"] == f and r["rater"] not in excluded]
        left = 0.0
        for v in range(1, 6):
            share = vals.count(v) / len(vals) if vals else 0.0
            ax.barh(k, share, left=left, color=LIKERT_COLORS[v - 1], height=0.6,
                    label=str(v) if k == 0 else None)
            if share >= 0.06:
                ax.text(left + share / 2, k, f"{share:.0%}", ha="center", va="center", fontsize=7)
            left += share
    ax.set_yticks(range(len(names)), [SHORT[f].replace("\n", " ") for f in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(title="answer", ncols=5, fontsize=7, title_fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15),
              frameon=False)
    ax.set_title("Share of each answer per question family", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "likert.png")
    plt.close(fig)
    files["likert"] = "likert.png"
    return files
