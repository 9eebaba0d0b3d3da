"""refsd.evaluate.attributes: categories, the requested distribution's marginals, the chi-square
test against hand-computed values, people drawn from the same / another distribution, a
classifier's labels."""

from __future__ import annotations

import math

import pytest
from scipy.stats import chi2

from refsd.evaluate import categories, chi_square, expected_marginals, observed_vs_sampled, sampled_vs_requested
from refsd.people import AttributeDistribution, PersonAttributes


def test_categories():
    c = categories(PersonAttributes(gender="male", age=34.5, weight=0.8, top="dress", bottom=None,
                                    bottom_color=None))
    assert c["gender"] == "male" and c["age"] == "30-40y" and c["weight"] == "0.75-1" and c["bottom"] == "none"
    assert categories({"age": 5})["age"] == "0-18y" and categories({"age": 100})["age"] == "70-100y"
    assert categories({"gender": "female"}) == {"gender": "female"}  # a classifier's partial labels


def test_expected_marginals_follow_the_distribution():
    # 20000 draws: the Monte-Carlo standard error of a share p is sqrt(p (1-p) / 20000) <= 0.0035;
    # 5 standard errors (0.018) is the bound
    m = expected_marginals(AttributeDistribution(female_probability=0.3, age_range=(20, 39.9),
                                                 skin_tones={"mst1": 1, "mst10": 3}))
    assert abs(m["gender"]["female"] - 0.3) < 0.018
    assert set(m["age"]) == {"18-30y", "30-40y"} and abs(m["age"]["18-30y"] - 0.5) < 0.018
    assert set(m["skin_tone"]) == {"mst1", "mst10"} and abs(m["skin_tone"]["mst10"] - 0.75) < 0.018
    assert abs(sum(m["top"].values()) - 1.0) < 1e-9


def test_chi_square_against_hand_computed_values():
    r = chi_square({"a": 10, "b": 30}, {"a": 0.5, "b": 0.5})
    # (10 - 20)^2 / 20 + (30 - 20)^2 / 20 = 10, one degree of freedom
    assert r["statistic"] == 10.0 and r["dof"] == 1
    assert r["p_value"] == pytest.approx(math.erfc(math.sqrt(10 / 2)), rel=1e-9)  # chi2(1) survival
    assert r["p_value"] == pytest.approx(chi2.sf(10.0, 1), rel=1e-12)
    r = chi_square({"a": 3, "b": 1, "c": 0}, {"a": 0.25, "b": 0.25, "c": 0.5})
    assert r["dof"] == 2 and "approximate" in r["note"]
    r = chi_square({"a": 5, "x": 1}, {"a": 1.0})
    assert r["p_value"] == 0.0 and "never gives" in r["note"]
    assert chi_square({"a": 5}, {"a": 1.0})["p_value"] is None


def test_sampled_people_pass_and_other_people_fail():
    asked = AttributeDistribution(female_probability=0.5)
    same = asked.sample(seed=11, n=400)
    res = sampled_vs_requested([p.to_dict() for p in same], asked.to_dict())
    assert res["gender"]["n"] == 400 and set(res["gender"]["expected"]) == {"female", "male"}
    assert all(v["p_value"] is None or v["p_value"] > 1e-3 for v in res.values()), \
        {k: v["p_value"] for k, v in res.items()}
    other = AttributeDistribution(female_probability=0.9).sample(seed=11, n=400)
    res = sampled_vs_requested([p.to_dict() for p in other], asked)
    assert res["gender"]["p_value"] < 1e-12
    counts_only = sampled_vs_requested([p.to_dict() for p in other], None)
    assert "p_value" not in counts_only["gender"] and sum(counts_only["gender"]["counts"].values()) == 400


def test_observed_labels_against_the_request():
    asked = [{"gender": "female", "age": 25}, {"gender": "male", "age": 61}, {"gender": "female", "age": 45}]
    seen = [{"gender": "female", "age": 27}, {"gender": "female"}, None]
    res = observed_vs_sampled(asked, seen)
    assert res["gender"] == {"n": 2, "agreement": 0.5, "confusion": {"female": {"female": 1}, "male": {"female": 1}}}
    assert res["age"]["agreement"] == 1.0 and res["age"]["n"] == 1
    with pytest.raises(ValueError, match="one per person"):
        observed_vs_sampled(asked, seen[:2])
