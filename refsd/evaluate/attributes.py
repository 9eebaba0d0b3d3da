"""Attributes rendered as asked: the sampled people against the requested distribution, and
(where the user has a classifier) against what a classifier sees in the output.

* :func:`categories`: a person's attributes as categories (ages in bands, the 0..1 body values
  in quarters, names as they are), so every attribute can be counted.
* :func:`expected_marginals`: the share of each category under an
  :class:`~refsd.people.AttributeDistribution`, estimated by drawing from it (the draws are
  the product's own, so conditional rules -- hair greying with age, dresses by gender, no
  bottom with a dress -- are exactly those of the run).
* :func:`sampled_vs_requested`: per attribute, the counts, the expected counts and Pearson's
  chi-square goodness-of-fit test (p-value from the chi-square distribution with k - 1 degrees
  of freedom over the k categories the distribution allows; a category the distribution
  forbids but that was sampled gives p = 0). A small p-value says the people drawn do not
  follow the distribution asked for; with expected counts under 5 the test is only approximate
  and the result says so.
* :func:`observed_vs_sampled`: per attribute, how often a classifier's label (any source: a
  JSON file of labels, or a Python callable in the library) equals what was asked, with the
  confusion counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..people import AttributeDistribution, PersonAttributes

__all__ = [
    "natural_key",
    "CATEGORICAL",
    "AGE_BANDS",
    "categories",
    "expected_marginals",
    "chi_square",
    "sampled_vs_requested",
    "observed_vs_sampled",
]

#: Attributes compared as they are (names).
CATEGORICAL = ("gender", "skin_tone", "hair_color", "hair_length", "top", "top_color", "bottom", "bottom_color",
               "shoes", "shoes_color")
#: Age bands ``[lo, hi)`` in years.
AGE_BANDS: tuple[tuple[float, float], ...] = ((0, 18), (18, 30), (30, 40), (40, 50), (50, 60), (60, 70), (70, 101))
_QUARTERS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0001))
NONE_LABEL = "none"


def natural_key(label: str) -> tuple:
    """Sort key putting numbers in labels in numeric order (mst2 before mst10, 18-30y before 100y)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(label)))


def _band(value: float, bands: Sequence[tuple[float, float]], top: float, unit: str = "") -> str:
    """The label ``"lo-hi<unit>"`` of the band holding ``value`` (clipped into the first/last band)."""
    lo, hi = next(((lo, hi) for lo, hi in bands if value < hi), bands[-1])
    return f"{lo:g}-{min(hi, top):g}{unit}"


def categories(attrs: Mapping[str, Any] | PersonAttributes) -> dict[str, str]:
    """``{attribute: category}`` for one person's attributes (a PersonAttributes or its dict):
    names as they are (None as ``"none"``), ``age`` in :data:`AGE_BANDS` (``"30-40y"``),
    ``weight`` / ``muscle`` / ``height`` in quarters of 0..1 (``"0.25-0.5"``). Missing keys are
    left out (a classifier that sees only the gender gives only the gender)."""
    a = attrs.to_dict() if isinstance(attrs, PersonAttributes) else dict(attrs)
    out: dict[str, str] = {}
    for k in CATEGORICAL:
        if k in a:
            out[k] = NONE_LABEL if a[k] is None else str(a[k])
    if a.get("age") is not None:
        out["age"] = _band(float(a["age"]), AGE_BANDS, 100, "y")
    for k in ("weight", "muscle", "height"):
        if a.get(k) is not None:
            out[k] = _band(float(a[k]), _QUARTERS, 1)
    return out


def expected_marginals(distribution: AttributeDistribution | Mapping[str, Any], draws: int = 20000,
                       seed: int = 0x5EED) -> dict[str, dict[str, float]]:
    """``{attribute: {category: share}}`` under ``distribution`` (or its dict), from ``draws``
    people drawn with the distribution's own sampler (Monte-Carlo standard error of a share p:
    sqrt(p (1 - p) / draws), 0.0035 at p = 0.5 with the default)."""
    dist = distribution if isinstance(distribution, AttributeDistribution) else \
        AttributeDistribution.from_dict(distribution)
    counts: dict[str, Counter] = {}
    for i in range(int(draws)):
        for k, v in categories(dist.sample_person(seed, i // 64, i % 64)).items():
            counts.setdefault(k, Counter())[v] += 1
    return {k: {c: cnt[c] / draws for c in sorted(cnt, key=natural_key)} for k, cnt in counts.items()}


def chi_square(observed: Mapping[str, int], expected_share: Mapping[str, float]) -> dict[str, Any]:
    """Pearson's goodness-of-fit test of category ``observed`` counts against ``expected_share``:
    ``{"statistic", "dof", "p_value", "note"}``. Categories the distribution never gives
    (share 0) but that were observed make ``p_value`` 0; with a single possible category there
    is nothing to test (``p_value`` None)."""
    from scipy.stats import chi2

    n = sum(observed.values())
    allowed = {c: s for c, s in expected_share.items() if s > 0}
    impossible = sorted(c for c, m in observed.items() if m and c not in allowed)
    if n == 0:
        return {"statistic": None, "dof": 0, "p_value": None, "note": "no people"}
    if impossible:
        return {"statistic": None, "dof": max(0, len(allowed) - 1), "p_value": 0.0,
                "note": f"sampled {', '.join(impossible)}, which the requested distribution never gives"}
    if len(allowed) < 2:
        return {"statistic": 0.0, "dof": 0, "p_value": None, "note": "one possible value: nothing to test"}
    stat = sum((observed.get(c, 0) - n * s) ** 2 / (n * s) for c, s in allowed.items())
    dof = len(allowed) - 1
    small = min(n * s for s in allowed.values())
    note = f"expected counts down to {small:.2g} (< 5): the chi-square p-value is approximate" if small < 5 else ""
    return {"statistic": float(stat), "dof": dof, "p_value": float(chi2.sf(stat, dof)), "note": note}


def sampled_vs_requested(sampled: Iterable[Mapping[str, Any]], distribution: AttributeDistribution | Mapping | None,
                         draws: int | None = None) -> dict[str, dict[str, Any]]:
    """Per attribute: ``counts`` of the sampled people's categories and, with a
    ``distribution``, ``expected`` counts and the :func:`chi_square` result. ``draws`` defaults
    to max(20000, 50 x the number of people), so the Monte-Carlo error of the expected shares
    stays far below the sampling error of the counts."""
    people = [categories(a) for a in sampled]
    out: dict[str, dict[str, Any]] = {}
    keys = sorted({k for p in people for k in p})
    marg = None
    if distribution is not None:
        marg = expected_marginals(distribution, draws or max(20000, 50 * len(people)))
        keys = sorted(set(keys) | set(marg))
    for k in keys:
        cnt = Counter(p[k] for p in people if k in p)
        entry: dict[str, Any] = {"n": sum(cnt.values()), "counts": {c: cnt[c] for c in sorted(cnt, key=natural_key)}}
        if marg is not None and k in marg:
            n = entry["n"]
            entry["expected"] = {c: round(n * s, 3) for c, s in marg[k].items()}
            entry.update(chi_square(cnt, marg[k]))
        out[k] = entry
    return out


def observed_vs_sampled(sampled: Sequence[Mapping[str, Any]],
                        observed: Sequence[Mapping[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Per attribute the classifier reports: ``n`` people it labelled, ``agreement`` (share whose
    observed category equals the requested one) and ``confusion`` ``{requested: {observed: n}}``.
    ``observed[i]`` belongs to ``sampled[i]``; None (or missing keys) = not labelled."""
    if len(sampled) != len(observed):
        raise ValueError(f"{len(sampled)} sampled people but {len(observed)} observed labels; give one per person")
    conf: dict[str, dict[str, Counter]] = {}
    for want, seen in zip(sampled, observed, strict=True):
        if not seen:
            continue
        w, s = categories(want), categories(seen)
        for k, v in s.items():
            if k in w:
                conf.setdefault(k, {}).setdefault(w[k], Counter())[v] += 1
    out = {}
    for k, rows in sorted(conf.items()):
        n = sum(sum(r.values()) for r in rows.values())
        agree = sum(r.get(want, 0) for want, r in rows.items())
        out[k] = {"n": n, "agreement": agree / n if n else None,
                  "confusion": {want: dict(sorted(r.items())) for want, r in sorted(rows.items())}}
    return out
