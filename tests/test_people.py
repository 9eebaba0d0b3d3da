"""Tests for refsd.people.attributes (person attributes, sampling, prompts, body shapes) and
refsd.people.materials (vertex colours through the body-part labels). Real body models throughout:
Anny's real data and the synthetic SMPL-X-format file (session fixtures from conftest.py)."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

from refsd.body import PART_INDEX, PART_NAMES
from refsd.errors import RefSDError
from refsd.people import (
    AGE_GROUPS,
    BOTTOMS,
    COLORS,
    HAIR_COLORS,
    HAIR_LENGTHS,
    MATERIAL_INDEX,
    MATERIAL_NAMES,
    NEGATIVE_TAGS,
    PERSON_FIELDS,
    SHOES,
    SKIN_TONE_SOURCE,
    SKIN_TONE_WORDS,
    SKIN_TONES,
    TOPS,
    AttributeDistribution,
    AttributesError,
    MaterialsError,
    PersonAttributes,
    age_group,
    anny_shape,
    build_image_prompt,
    build_prompt,
    color_word,
    estimate_clip_tokens,
    height_from_stature,
    material_colors,
    material_regions,
    parse_color,
    part_palette,
    person_description,
    rest_vertices_of,
    smplx_gender,
    smplx_shape,
    stature_m,
    vertex_colors,
)

BASE = PersonAttributes(
    gender="female",
    age=34,
    weight=0.5,
    muscle=0.5,
    height=0.5,
    skin_tone="mst5",
    hair_color="blonde",
    hair_length="long",
    top="t-shirt",
    top_color="red",
    bottom="trousers",
    bottom_color="blue",
    shoes="sneakers",
    shoes_color="white",
)

MONK = {
    "mst1": "#f6ede4", "mst2": "#f3e7db", "mst3": "#f7ead0", "mst4": "#eadaba", "mst5": "#d7bd96",
    "mst6": "#a07e56", "mst7": "#825c43", "mst8": "#604134", "mst9": "#3a312a", "mst10": "#292420",
}  # fmt: skip


def parts(model, *names):
    m = torch.zeros(model.num_vertices, dtype=torch.bool)
    for n in names:
        m |= (model.part_labels == PART_INDEX[n]).cpu()
    return m


def changed(a, b):
    """Bool (V,) where two colour tensors differ."""
    return (a - b).abs().amax(dim=1).cpu() > 1e-6


def stature(model, shape):
    p = model.zero_params(1)
    p["shape"] = shape.reshape(1, -1).to(model.dtype)
    with torch.no_grad():
        y = model(**p).vertices[0, :, 1]
    return float(y.max() - y.min())


# ---------------------------------------------------------------------------------------
# PersonAttributes: validation, canonical names, serialisation
# ---------------------------------------------------------------------------------------


def test_monk_table_and_source():
    assert SKIN_TONES == MONK
    assert list(SKIN_TONE_WORDS) == list(MONK)
    assert len(set(SKIN_TONE_WORDS.values())) == 10
    assert "Monk" in SKIN_TONE_SOURCE and "CC-BY-4.0" in SKIN_TONE_SOURCE
    # Lightest to darkest: luminance falls over the scale (mst3 is a warmer, equally light step).
    lum = [sum(parse_color(MONK[k])) for k in MONK]
    assert lum[0] > lum[4] > lum[6] > lum[8] > lum[9]


def test_roundtrip_json_lossless():
    for a in [BASE, PersonAttributes(), AttributeDistribution().sample_person(7, 3, 2)]:
        d = json.loads(json.dumps(a.to_dict()))
        assert set(d) == set(PERSON_FIELDS)
        b = PersonAttributes.from_dict(d)
        assert b == a and b.to_dict() == a.to_dict()
    dress = BASE.replace(top="dress", bottom=None, bottom_color=None)
    assert PersonAttributes.from_dict(json.loads(json.dumps(dress.to_dict()))) == dress


def test_names_are_canonicalised():
    a = PersonAttributes(
        gender="Woman",
        age=40,
        skin_tone=7,
        hair_color="Grey",
        hair_length="LONG",
        top="T_Shirt",
        top_color="Light Blue",
        bottom="pants",
        bottom_color="#AABBCC",
        shoes="dress shoes",
        shoes_color="grey",
    )
    assert (a.gender, a.skin_tone, a.hair_color, a.hair_length) == ("female", "mst7", "gray", "long")
    assert (a.top, a.top_color, a.bottom, a.bottom_color) == ("t-shirt", "light_blue", "trousers", "#aabbcc")
    assert (a.shoes, a.shoes_color, a.age) == ("dress_shoes", "gray", 40.0)
    assert isinstance(a.age, float)
    assert PersonAttributes(skin_tone="MST10").skin_tone == "mst10"
    assert PersonAttributes(skin_tone="3").skin_tone == "mst3"


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("gender", "robot", ["female", "male"]),
        ("skin_tone", "olive", list(SKIN_TONES)),
        ("skin_tone", 11, list(SKIN_TONES)),
        ("hair_color", "green", list(HAIR_COLORS)),
        ("hair_length", "very long", list(HAIR_LENGTHS)),
        ("top", "hoodie", list(TOPS)),
        ("bottom", "kilt", list(BOTTOMS)),
        ("shoes", "skates", list(SHOES)),
        ("top_color", "sparkly", list(COLORS) + ["#rrggbb"]),
        ("bottom_color", "#12345", list(COLORS) + ["#rrggbb"]),
        ("shoes_color", 3, list(COLORS) + ["#rrggbb"]),
    ],
)
def test_unknown_names_list_the_allowed_ones(field, value, allowed):
    with pytest.raises(AttributesError) as e:
        BASE.replace(**{field: value})
    msg = str(e.value)
    assert repr(value) in msg and field in msg
    for name in allowed:
        assert name in msg
    assert isinstance(e.value, RefSDError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "field, value",
    [
        ("age", 0.5),
        ("age", 100.5),
        ("age", float("nan")),
        ("age", "30"),
        ("weight", -0.01),
        ("weight", 1.2),
        ("muscle", float("inf")),
        ("height", 2),
        ("height", True),
        ("height", None),
    ],
)
def test_out_of_range_numbers(field, value):
    with pytest.raises(AttributesError, match=rf"{field}.*\[") as e:
        BASE.replace(**{field: value})
    assert "0.5 = average" in str(e.value) or "years" in str(e.value)


def test_inconsistent_combinations():
    with pytest.raises(AttributesError, match="top='dress'"):
        BASE.replace(bottom=None)
    with pytest.raises(AttributesError, match="bottom_color"):
        BASE.replace(bottom_color=None)
    with pytest.raises(AttributesError, match="top_color"):
        BASE.replace(top_color=None)
    with pytest.raises(AttributesError, match="shoes_color"):
        BASE.replace(shoes_color=None)
    # Allowed: no bottom with a dress, no colour for no top / no shoes.
    dress = BASE.replace(top="dress", bottom=None, bottom_color=None)
    assert dress.effective_bottom is None
    assert BASE.replace(top="dress").effective_bottom is None  # a given bottom is ignored
    BASE.replace(top="none", top_color=None, shoes="none", shoes_color=None)
    with pytest.raises(AttributesError, match="Use:.*gender"):
        PersonAttributes.from_dict({**BASE.to_dict(), "glasses": True})
    with pytest.raises(AttributesError, match="dict"):
        PersonAttributes.from_dict(["female"])
    with pytest.raises(AttributesError, match="Use:"):
        BASE.replace(eye_color="blue")
    assert BASE.validate() is BASE


# ---------------------------------------------------------------------------------------
# Height and body shape
# ---------------------------------------------------------------------------------------


def test_stature_table():
    assert stature_m("male", 30, 0.5) == pytest.approx(1.765)
    assert stature_m("female", 30, 0.5) == pytest.approx(1.632)
    assert 1.55 < stature_m("male", 30, 0.0) < 1.62 and 1.90 < stature_m("male", 30, 1.0) < 1.97
    assert 1.44 < stature_m("female", 30, 0.0) < 1.50 and 1.77 < stature_m("female", 30, 1.0) < 1.83
    kids = [stature_m("female", y, 0.5) for y in (1, 3, 6, 10, 14, 18)]
    assert kids == sorted(kids) and 0.7 < kids[0] < 0.8
    assert stature_m("male", 85, 0.5) < stature_m("male", 40, 0.5)
    for g, age, m in [("male", 30, 1.80), ("female", 8, 1.25), ("female", 70, 1.55)]:
        assert stature_m(g, age, height_from_stature(g, age, m)) == pytest.approx(m)
    with pytest.raises(AttributesError, match=r"1\.59\.\.1\.94 m"):
        height_from_stature("male", 30, 2.2)
    assert BASE.stature_m == pytest.approx(1.632)


def test_anny_shape_height_gender_age(anny_model):
    tall = anny_shape(BASE.replace(height=0.9), anny_model)
    short = anny_shape(BASE.replace(height=0.1), anny_model)
    assert tall.shape == (6,) and tall.dtype == anny_model.dtype
    s_tall, s_short = stature(anny_model, tall), stature(anny_model, short)
    assert s_tall > s_short + 0.2
    assert s_tall == pytest.approx(BASE.replace(height=0.9).stature_m, abs=0.01)
    assert s_short == pytest.approx(BASE.replace(height=0.1).stature_m, abs=0.01)
    names = anny_model.shape_names
    male = anny_shape(BASE.replace(gender="male"))  # table, no model
    assert float(anny_shape(BASE)[names.index("gender")]) == 1.0 and float(male[names.index("gender")]) == 0.0
    assert stature(anny_model, male) == pytest.approx(BASE.replace(gender="male").stature_m, abs=0.03)
    child = anny_shape(BASE.replace(age=8))
    assert float(child[names.index("age")]) < float(tall[names.index("age")])
    assert stature(anny_model, child) == pytest.approx(BASE.replace(age=8).stature_m, abs=0.03)
    heavy = anny_shape(BASE.replace(weight=0.9, muscle=0.2))
    assert float(heavy[names.index("weight")]) == pytest.approx(0.9)
    assert float(heavy[names.index("muscle")]) == pytest.approx(0.2)
    assert bool(((tall >= 0) & (tall <= 1)).all())


def test_smplx_shape(smplx_model):
    assert smplx_shape(BASE)[0] == "SMPLX_FEMALE.npz"
    assert smplx_shape(BASE.replace(gender="male"))[0] == "SMPLX_MALE.npz"
    assert smplx_gender(BASE) == "female"
    name, betas = smplx_shape(BASE.replace(height=0.9, weight=0.8), num_betas=16)
    assert betas.shape == (16,) and float(betas[0]) > 0 and float(betas[1]) > 0 and bool((betas[2:] == 0).all())
    # Calibrated on a model: exact stature, heavier = wider torso.
    for h in (0.2, 0.8):
        a = BASE.replace(gender="male", height=h)
        _, b = smplx_shape(a, model=smplx_model)
        assert b.shape == (smplx_model.num_shape,)
        assert stature(smplx_model, b) == pytest.approx(a.stature_m, abs=0.01)
    torso = (smplx_model.part_labels == PART_INDEX["torso"]).cpu()

    def width(w):
        _, b = smplx_shape(BASE.replace(weight=w), model=smplx_model)
        p = smplx_model.zero_params(1)
        p["shape"] = b[None]
        with torch.no_grad():
            x = smplx_model(**p).vertices[0, torso, 0]
        return float(x.max() - x.min())

    assert width(0.9) > width(0.1)
    with pytest.raises(AttributesError, match="anny_shape"):
        smplx_shape(BASE, model=_FakeModel(("gender", "age")))
    with pytest.raises(AttributesError, match="smplx_shape"):
        anny_shape(BASE, smplx_model)
    with pytest.raises(AttributesError, match="num_betas"):
        smplx_shape(BASE, num_betas=1)


class _FakeModel:
    def __init__(self, names):
        self.shape_names = names


# ---------------------------------------------------------------------------------------
# Materials
# ---------------------------------------------------------------------------------------


def test_skin_tone_changes_only_skin(anny_model):
    base = vertex_colors(BASE, anny_model)
    assert base.shape == (anny_model.num_vertices, 3) and base.dtype == torch.float32
    assert float(base.min()) >= 0 and float(base.max()) <= 1
    skin = material_regions(BASE, anny_model) == MATERIAL_INDEX["skin"]
    # Exposed skin: face and hands always, the forearms under a t-shirt.
    assert bool(skin[parts(anny_model, "face", "hand_l", "hand_r")].all())
    assert bool(skin[parts(anny_model, "lower_arm_l", "lower_arm_r")].all())
    for tone in SKIN_TONES:
        if tone == BASE.skin_tone:
            continue
        other = vertex_colors(BASE.replace(skin_tone=tone), anny_model)
        diff = changed(base, other)
        assert torch.equal(diff, skin), tone
        want = torch.tensor(parse_color(SKIN_TONES[tone]), dtype=torch.float32)
        assert torch.allclose(other[skin], want.expand(int(skin.sum()), 3))


def test_trousers_vs_shorts(anny_model):
    trousers = vertex_colors(BASE, anny_model)
    shorts = vertex_colors(BASE.replace(bottom="shorts"), anny_model)
    diff = changed(trousers, shorts)
    lower = parts(anny_model, "lower_leg_l", "lower_leg_r")
    assert bool(diff[lower].all())  # trousers down to the ankle, shorts end above the knee
    assert 0.2 < float(diff[parts(anny_model, "upper_leg_l", "upper_leg_r")].float().mean()) < 0.7
    assert not bool(diff[parts(anny_model, "torso", "head", "face", "hand_l", "hand_r")].any())
    bottom = torch.tensor(parse_color("blue"))
    assert torch.allclose(trousers[lower], bottom.expand(int(lower.sum()), 3))
    # A skirt covers the upper legs only; a dress replaces the bottom and covers the torso.
    skirt = vertex_colors(BASE.replace(bottom="skirt"), anny_model)
    assert bool(changed(trousers, skirt)[lower].all())
    assert not bool(changed(trousers, skirt)[parts(anny_model, "upper_leg_l", "upper_leg_r", "torso")].any())
    dress = vertex_colors(BASE.replace(top="dress", bottom=None, bottom_color=None, hair_length="short"), anny_model)
    top = torch.tensor(parse_color("red"))
    legs = parts(anny_model, "upper_leg_l", "upper_leg_r", "torso")
    assert torch.allclose(dress[legs], top.expand(int(legs.sum()), 3))
    assert 0.1 < float((changed(dress, shorts) & lower).sum() / lower.sum()) < 0.6  # knee length
    # Long hair falls over the dress's back.
    long = material_regions(BASE.replace(top="dress"), anny_model)
    assert bool((long[parts(anny_model, "torso")] == MATERIAL_INDEX["hair"]).any())


def test_tops(anny_model):
    shirt = vertex_colors(BASE, anny_model)
    none = vertex_colors(BASE.replace(top="none", top_color=None), anny_model)
    diff = changed(shirt, none)
    torso = parts(anny_model, "torso")
    assert float(diff[torso].float().mean()) > 0.6
    assert not bool(diff[parts(anny_model, "lower_leg_l", "upper_leg_l", "lower_arm_l", "face")].any())
    long = vertex_colors(BASE.replace(top="long-sleeve"), anny_model)
    assert bool(changed(shirt, long)[parts(anny_model, "lower_arm_l", "lower_arm_r")].all())
    assert not bool(changed(shirt, long)[torso].any())
    jacket = vertex_colors(BASE.replace(top="jacket"), anny_model)
    regions = material_regions(BASE.replace(top="jacket"), anny_model)
    inner = regions == MATERIAL_INDEX["inner"]
    assert 30 < int(inner.sum()) and bool(torso[inner].all())
    assert torch.allclose(jacket[inner], torch.tensor(parse_color("#f0f0f0")).expand(int(inner.sum()), 3))
    assert bool(changed(long, jacket)[parts(anny_model, "neck")].any())  # collar
    for value in TOPS:
        a = BASE.replace(top=value, top_color=None if value == "none" else "red")
        cov = material_regions(a, anny_model) == MATERIAL_INDEX["top"]
        assert (int(cov.sum()) == 0) == (value == "none"), value


def test_hair_lengths(anny_model):
    def hair(length):
        return material_regions(BASE.replace(hair_length=length), anny_model) == MATERIAL_INDEX["hair"]

    scalp = parts(anny_model, "hair")
    assert int(hair("bald").sum()) == 0
    assert torch.equal(hair("short"), scalp)
    assert bool((hair("short") <= hair("medium")).all()) and bool((hair("medium") <= hair("long")).all())
    assert int(hair("short").sum()) < int(hair("medium").sum()) < int(hair("long").sum())
    long = hair("long")
    assert bool(long[parts(anny_model, "neck")].any()) and not bool(hair("medium")[parts(anny_model, "neck")].any())
    rest = rest_vertices_of(anny_model)
    back = rest[:, 2] < rest[parts(anny_model, "torso"), 2].mean()
    on_torso = long & parts(anny_model, "torso")
    assert int(on_torso.sum()) > 10 and bool(back[on_torso].all())  # long hair falls down the back
    bald = vertex_colors(BASE.replace(hair_length="bald"), anny_model)
    skin = torch.tensor(parse_color(SKIN_TONES[BASE.skin_tone]))
    assert torch.allclose(bald[scalp], skin.expand(int(scalp.sum()), 3))
    long_cols = vertex_colors(BASE, anny_model)
    assert torch.allclose(
        long_cols[scalp], torch.tensor(parse_color(HAIR_COLORS["blonde"])).expand(int(scalp.sum()), 3)
    )
    assert not bool(changed(bald, long_cols)[parts(anny_model, "face") & ~long].any())
    # Every hair colour reaches the hair vertices, and only them.
    for colour in HAIR_COLORS:
        other = vertex_colors(BASE.replace(hair_color=colour), anny_model)
        assert bool((changed(long_cols, other) <= long).all())
        assert torch.allclose(other[scalp][0], torch.tensor(parse_color(HAIR_COLORS[colour])))


def test_shoes(anny_model):
    feet = parts(anny_model, "foot_l", "foot_r")
    base = BASE.replace(bottom="shorts")  # trousers reach down over the ankle
    none = vertex_colors(base.replace(shoes="none", shoes_color=None), anny_model)
    skin = torch.tensor(parse_color(SKIN_TONES[BASE.skin_tone]))
    assert torch.allclose(none[feet], skin.expand(int(feet.sum()), 3))
    covered = {}
    for value in SHOES[1:]:
        cols = vertex_colors(base.replace(shoes=value, shoes_color="brown"), anny_model)
        diff = changed(none, cols)
        covered[value] = float(diff[feet].float().mean())
        assert not bool(diff[parts(anny_model, "torso", "hand_l", "face")].any()), value
    assert covered["boots"] == 1.0 and covered["sneakers"] > 0.6 and covered["dress_shoes"] > 0.6
    assert 0.05 < covered["sandals"] < 0.5
    boots = material_regions(base.replace(shoes="boots"), anny_model)
    lower = parts(anny_model, "lower_leg_l", "lower_leg_r")
    assert 0.2 < float((boots[lower] == MATERIAL_INDEX["shoes"]).float().mean()) < 0.6  # boot shafts
    sneak = material_colors(BASE)
    dress = material_colors(BASE.replace(shoes="dress_shoes", shoes_color="white"))
    assert sneak["sole"] != dress["sole"]


def test_every_colour_paints_its_garment(anny_model):
    regions = material_regions(BASE, anny_model)
    for name in COLORS:
        rgb = torch.tensor(parse_color(name))
        a = BASE.replace(top_color=name, bottom_color=name, shoes_color=name)
        cols = vertex_colors(a, anny_model)
        for garment in ("top", "bottom", "shoes"):
            m = regions == MATERIAL_INDEX[garment]
            assert torch.allclose(cols[m], rgb.expand(int(m.sum()), 3)), (name, garment)
    cols = vertex_colors(BASE.replace(top_color="#102030"), anny_model)
    m = regions == MATERIAL_INDEX["top"]
    assert torch.allclose(cols[m][0], torch.tensor([16 / 255, 32 / 255, 48 / 255]))


def test_materials_on_smplx_and_rest_vertices(smplx_model, anny_model):
    cols = vertex_colors(BASE, smplx_model)
    assert cols.shape == (smplx_model.num_vertices, 3)
    regions = material_regions(BASE, smplx_model)
    counts = Counter(MATERIAL_NAMES[i] for i in regions.tolist())
    for name in ("skin", "hair", "top", "bottom", "shoes", "sole", "sclera", "iris"):
        assert counts[name] > 0, name
    # T-pose arms: the short sleeve still ends half-way down the upper arm.
    upper = parts(smplx_model, "upper_arm_l")
    assert 0.3 < float((regions[upper] == MATERIAL_INDEX["top"]).float().mean()) < 0.8
    # Explicit rest vertices (the same rest pose) give the same result; deterministic.
    rest = rest_vertices_of(anny_model)
    assert torch.equal(vertex_colors(BASE, anny_model, rest), vertex_colors(BASE, anny_model))
    assert torch.equal(vertex_colors(BASE, anny_model, rest.float()[None]), vertex_colors(BASE, anny_model))
    with pytest.raises(MaterialsError, match=r"expected \(13492, 3\)|expected \(\d+, 3\)"):
        vertex_colors(BASE, anny_model, rest[:10])
    with pytest.raises(MaterialsError, match="part_labels"):
        vertex_colors(BASE, object())
    with pytest.raises(AttributesError, match="PersonAttributes"):
        vertex_colors("female", anny_model)
    assert torch.equal(vertex_colors(BASE.to_dict(), anny_model), vertex_colors(BASE, anny_model))


def test_part_palette():
    pal = part_palette()
    assert pal.shape == (len(PART_NAMES) + 1, 3) and pal.dtype == torch.uint8
    assert pal[-1].tolist() == [0, 0, 0] and torch.equal(pal[len(PART_NAMES)], pal[-1])
    rows = [tuple(r) for r in pal.tolist()]
    assert len(set(rows)) == len(rows)
    d = torch.cdist(pal.float(), pal.float()) + torch.eye(len(rows)) * 1e9
    assert float(d.min()) > 60  # clearly distinct colours
    assert torch.equal(part_palette(), pal)


# ---------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------


def test_build_prompt_example():
    pos, neg = build_prompt(BASE)
    assert pos.startswith("a photo of a 34 year old woman, medium skin, long blonde hair, ")
    assert "wearing a red t-shirt and blue jeans" in pos and "white sneakers" in pos
    assert pos.endswith("natural light, realistic, detailed skin, high quality")
    assert estimate_clip_tokens(pos) < 75
    for tag in ("deformed", "extra limbs", "blurry", "cartoon", "bad anatomy", "nsfw"):
        assert tag in neg
    assert "beard" in neg and "short hair" in neg
    pos2, neg2 = build_prompt(BASE, extra_positive=" in a park, sunny day, ", extra_negative="hat")
    assert "white sneakers, in a park, sunny day, natural light" in pos2
    assert neg2.endswith(", hat")
    assert build_prompt(BASE.to_dict()) == (pos, neg)
    with pytest.raises(AttributesError, match="extra_positive"):
        build_prompt(BASE, extra_positive=3)


@pytest.mark.parametrize(
    "changes, expect",
    [
        ({"gender": "male"}, "34 year old man"),
        ({"age": 8}, "an 8 year old girl"),
        ({"age": 2, "gender": "male"}, "2 year old toddler boy"),
        ({"age": 15}, "15 year old teenage girl"),
        ({"age": 22, "gender": "male"}, "22 year old young man"),
        ({"age": 52}, "52 year old middle-aged woman"),
        ({"age": 80}, "an 80 year old elderly woman"),
        ({"hair_length": "bald"}, ", bald,"),
        ({"hair_length": "short"}, "short blonde hair"),
        ({"hair_length": "medium"}, "medium-length blonde hair"),
        ({"hair_color": "dark_brown"}, "long dark brown hair"),
        ({"top": "none", "top_color": None}, "shirtless, wearing blue jeans"),
        ({"top": "long-sleeve"}, "red long-sleeve shirt"),
        ({"top": "jacket", "top_color": "orange"}, "wearing an orange jacket"),
        ({"top": "dress", "bottom": None, "bottom_color": None}, "wearing a red knee-length dress, white"),
        ({"bottom": "shorts", "bottom_color": "khaki"}, "and khaki shorts"),
        ({"bottom": "skirt"}, "and a blue skirt"),
        ({"bottom_color": "denim"}, "and jeans,"),
        ({"bottom_color": "black"}, "and black trousers"),
        ({"shoes": "none", "shoes_color": None}, ", barefoot,"),
        ({"shoes": "boots", "shoes_color": "brown"}, "brown boots"),
        ({"shoes": "dress_shoes", "shoes_color": "black"}, "black dress shoes"),
        ({"shoes": "sandals"}, "white sandals"),
        ({"height": 0.9}, "skin, tall, long"),
        ({"height": 0.1}, "skin, short, long"),
        ({"weight": 0.9, "muscle": 0.9}, "skin, overweight, muscular, long"),
        ({"weight": 0.25}, "skin, slim, long"),
        ({"weight": 0.1}, "skin, skinny, long"),
        ({"muscle": 0.7}, "skin, athletic, long"),
        ({"top_color": "#2b5dab"}, "wearing a blue t-shirt"),
    ],
)
def test_prompt_words(changes, expect):
    pos, _ = build_prompt(BASE.replace(**changes))
    assert expect in pos


def test_every_value_appears_in_prompt():
    for tone, word in SKIN_TONE_WORDS.items():
        assert f", {word} skin," in build_prompt(BASE.replace(skin_tone=tone))[0]
    for colour in HAIR_COLORS:
        assert f"long {colour.replace('_', ' ')} hair" in build_prompt(BASE.replace(hair_color=colour))[0]
    for colour in COLORS:
        pos = build_prompt(BASE.replace(top_color=colour))[0]
        assert f" {colour.replace('_', ' ')} t-shirt" in pos
        assert color_word(colour) == colour.replace("_", " ")
    # Every garment value gives its own prompt.
    variants = [("top", v) for v in TOPS] + [("bottom", v) for v in BOTTOMS] + [("shoes", v) for v in SHOES]
    texts = {}
    for f, v in variants:
        a = BASE.replace(**{f: v, f"{f}_color": None if v == "none" else getattr(BASE, f"{f}_color")})
        texts.setdefault(build_prompt(a)[0], []).append((f, v))
    assert all(len(v) == 1 or set(v) == {("top", "t-shirt"), ("bottom", "trousers"), ("shoes", "sneakers")}
               for v in texts.values())  # fmt: skip
    assert len(texts) == len(variants) - 2
    groups = [age_group(start)[0] for start, *_ in AGE_GROUPS]
    assert groups == [g for _, g, _, _ in AGE_GROUPS]
    assert age_group(17.9)[0] == "teenager" and age_group(18)[0] == "young adult"


def test_prompts_stay_short():
    people = AttributeDistribution(age_range=(1, 100)).sample(3, 300)
    worst = max(estimate_clip_tokens(build_prompt(p)[0]) for p in people)
    assert worst < 75
    assert estimate_clip_tokens("a photo, of") == 4


def test_image_prompt():
    man = BASE.replace(gender="male", age=50, hair_length="short", hair_color="black")
    pos, neg = build_image_prompt([BASE, man], extra_positive="on a beach")
    assert pos.startswith("a photo of two people: a 34 year old woman, ")
    assert "; a 50 year old middle-aged man, " in pos
    assert person_description(BASE) in pos and person_description(man) in pos
    assert pos.endswith("on a beach, natural light, realistic, detailed skin, high quality")
    # Terms that would fight one of the people are dropped from the shared negative.
    assert "short hair" not in neg and "long hair" not in neg and "beard" not in neg
    assert all(t in neg for t in NEGATIVE_TAGS)
    assert build_image_prompt([BASE]) == build_prompt(BASE)
    assert build_image_prompt([BASE] * 3)[0].startswith("a photo of three people: ")
    assert build_image_prompt([BASE] * 12)[0].startswith("a photo of 12 people: ")
    with pytest.raises(AttributesError, match="at least one"):
        build_image_prompt([])


# ---------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------


def test_sampler_deterministic_and_stable():
    dist = AttributeDistribution()
    a = dist.sample(seed=1234, n=20)
    b = AttributeDistribution().sample(seed=1234, n=20)
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert json.dumps([p.to_dict() for p in a]) == json.dumps([p.to_dict() for p in b])
    assert [p.to_dict() for p in dist.sample(1235, 20)] != [p.to_dict() for p in a]
    # Adding people does not change the others; images are independent streams.
    assert dist.sample(1234, 5) == a[:5]
    assert dist.sample_person(1234, 0, 7) == a[7]
    assert dist.sample(1234, 3, image_index=4)[2] == dist.sample_person(1234, 4, 2)
    assert dist.sample_person(1234, 4, 2) != dist.sample_person(1234, 5, 2)
    # Pinning one attribute leaves the other draws alone.
    pinned = AttributeDistribution(fixed={"skin_tone": "mst9"}).sample(1234, 20)
    for p, q in zip(a, pinned, strict=True):
        assert q.skin_tone == "mst9" and q.replace(skin_tone=p.skin_tone) == p
    assert dist.sample(1234, 0) == []


def test_sampler_respects_distributions():
    dist = AttributeDistribution(female_probability=0.8, age_range=(20, 40), height_range=(0.3, 0.6))
    people = dist.sample(seed=99, n=2000)
    females = sum(p.gender == "female" for p in people) / len(people)
    assert 0.75 <= females <= 0.85
    assert all(20 <= p.age <= 40 and 0.3 <= p.height <= 0.6 for p in people)
    assert all(0.2 <= p.weight <= 0.8 and 0.2 <= p.muscle <= 0.8 for p in people)
    tones = Counter(p.skin_tone for p in people)
    assert set(tones) == set(SKIN_TONES) and all(0.07 < c / 2000 < 0.13 for c in tones.values())
    assert all(p.gender == "female" for p in people if p.top == "dress" or p.bottom == "skirt")
    assert any(p.top == "dress" for p in people) and any(p.bottom == "skirt" for p in people)
    assert all(p.bottom is None and p.bottom_color is None for p in people if p.top == "dress")
    assert not any(p.top == "none" or p.shoes == "none" for p in people)  # default weights
    young = [p for p in people if p.age < 30]
    assert not any(p.hair_color in ("gray", "white") for p in young)

    custom = AttributeDistribution(
        female_probability=0.0,
        skin_tones={"mst1": 1, "MST10": 3},
        hair_lengths={"bald": 1},
        tops={"jacket": 1, "dress": 5},
        bottoms={"skirt": 1, "shorts": 1},
        shoes={"boots": 1},
        colors={"purple": 1},
        dresses_and_skirts="female",
        age_range=(60, 60),
        gray_hair_with_age=False,
        hair_colors={"red": 1},
    ).sample(5, 400)
    share = sum(p.skin_tone == "mst10" for p in custom) / 400
    assert 0.68 < share < 0.82 and {p.skin_tone for p in custom} == {"mst1", "mst10"}
    assert {(p.gender, p.hair_length, p.top, p.bottom, p.shoes, p.age, p.hair_color) for p in custom} == {
        ("male", "bald", "jacket", "shorts", "boots", 60.0, "red")
    }
    assert {(p.top_color, p.bottom_color, p.shoes_color) for p in custom} == {("purple",) * 3}
    never = AttributeDistribution(female_probability=1.0, dresses_and_skirts="never").sample(0, 300)
    assert not any(p.top == "dress" or p.bottom == "skirt" for p in never)
    anyone = AttributeDistribution(female_probability=0.0, dresses_and_skirts="anyone").sample(0, 300)
    assert any(p.top == "dress" for p in anyone)
    old = AttributeDistribution(age_range=(75, 80)).sample(0, 300)
    assert sum(p.hair_color in ("gray", "white") for p in old) > 150


def test_sampler_fixed_overrides():
    dist = AttributeDistribution(fixed={"gender": "man", "top": "dress", "age": 30, "bottom": "shorts"})
    assert dist.fixed == {"gender": "male", "top": "dress", "age": 30.0, "bottom": "shorts"}
    people = dist.sample(2, 50)
    assert all(p.gender == "male" and p.top == "dress" and p.age == 30.0 and p.bottom == "shorts" for p in people)
    assert all(p.bottom_color is not None for p in people)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"female_probability": 1.5}, r"female_probability.*\[0, 1\]"),
        ({"age_range": (10, 120)}, r"age_range.*\[1, 100\]"),
        ({"age_range": (50, 20)}, "swap"),
        ({"weight_range": (0.2,)}, "pair"),
        ({"height_range": "tall"}, "pair"),
        ({"skin_tones": {"mst1": -1, "mst2": 2}}, ">= 0"),
        ({"skin_tones": {"mst1": 0, "mst2": 0}}, "sum to 0"),
        ({"skin_tones": {}}, "non-empty"),
        ({"skin_tones": {"mst11": 1}}, "mst1, mst2"),
        ({"hair_colors": {"green": 1}}, "black, dark_brown"),
        ({"tops": {"hoodie": 1}}, "t-shirt, long-sleeve"),
        ({"colors": {"red": float("nan")}}, ">= 0"),
        ({"shoes": {"boots": True}}, ">= 0"),
        ({"dresses_and_skirts": "men"}, "female, anyone, never"),
        ({"tops": {"dress": 1}, "female_probability": 0.5}, "dresses_and_skirts='anyone'"),
        ({"bottoms": {"skirt": 1}, "female_probability": 0.2}, "Add another bottom"),
        ({"fixed": {"glasses": True}}, "Use: gender"),
        ({"fixed": {"top": "hoodie"}}, "Use one of: none, t-shirt"),
        ({"gray_hair_with_age": "yes"}, "True or False"),
    ],
)
def test_distribution_errors(kwargs, match):
    with pytest.raises(AttributesError, match=match):
        AttributeDistribution(**kwargs)


def test_distribution_roundtrip_and_argument_errors():
    dist = AttributeDistribution(
        female_probability=0.3, skin_tones={"mst4": 2, "mst7": 1}, fixed={"shoes": "boots"}, colors={"red": 1}
    )
    d = json.loads(json.dumps(dist.to_dict()))
    again = AttributeDistribution.from_dict(d)
    assert again == dist and again.sample(8, 10) == dist.sample(8, 10)
    assert AttributeDistribution.from_dict({}) == AttributeDistribution()
    with pytest.raises(AttributesError, match="Use: female_probability"):
        AttributeDistribution.from_dict({"female_ratio": 0.5})
    for bad in ({"seed": 1.5}, {"seed": "1"}, {"person_index": -1}):
        args = {"seed": 0, "image_index": 0, "person_index": 0, **bad}
        with pytest.raises(AttributesError, match="seed|index"):
            dist.sample_person(**args)
    with pytest.raises(AttributesError, match="n must be"):
        dist.sample(0, -1)
    # Values out of range are caught when sampling after a mutation, too.
    dist.age_range = (0, 10)
    with pytest.raises(AttributesError, match="age_range"):
        dist.sample(0, 1)
    assert not math.isnan(AttributeDistribution().sample_person(0).age)
