"""People nodes: Attributes, Sample Attributes, Attribute Prompt."""

from __future__ import annotations

from comfy_api.latest import io

from ..refsd.people import (
    BOTTOMS,
    COLORS,
    HAIR_COLORS,
    HAIR_LENGTHS,
    SHOES,
    SKIN_TONES,
    TOPS,
    AttributeDistribution,
    AttributesError,
    PersonAttributes,
    build_image_prompt,
    parse_choice_weights,
)
from ..refsd.render.avatar import AttributeSource
from ._common import ATTRIBUTES, BODY_FIT, CATEGORY

SKIN_TONE_NAMES = list(SKIN_TONES)
COLOR_NAMES = list(COLORS)


_choice_weights = parse_choice_weights


class Attributes(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        color = dict(options=COLOR_NAMES)
        return io.Schema(
            node_id="RefSDAttributes",
            display_name="RefSD Attributes",
            category=f"{CATEGORY}/avatar",
            description=(
                "Sets the look of the synthetic person explicitly: gender, age, body shape, skin tone (Monk Skin Tone "
                "scale mst1 lightest .. mst10 darkest), hair and clothing with colours. Every fitted person gets "
                "these attributes; use RefSD Sample Attributes to draw different ones per person for a dataset."
            ),
            inputs=[
                io.Combo.Input("gender", options=["female", "male"], default="female", tooltip="Gender of the avatar."),
                io.Float.Input("age", default=30.0, min=1.0, max=100.0, step=1.0, tooltip="Age in years."),
                io.Float.Input("weight", default=0.5, min=0.0, max=1.0, step=0.01, tooltip="Body weight, 0.5 = average."),
                io.Float.Input("muscle", default=0.5, min=0.0, max=1.0, step=0.01, tooltip="Muscularity, 0.5 = average."),
                io.Float.Input(
                    "height", default=0.5, min=0.0, max=1.0, step=0.01,
                    tooltip="Height relative to the median for the gender and age (0.5 = median).",
                ),
                io.Combo.Input("skin_tone", options=SKIN_TONE_NAMES, default="mst5", tooltip="Monk Skin Tone scale step."),
                io.Combo.Input("hair_color", options=list(HAIR_COLORS), default="brown", tooltip="Hair colour."),
                io.Combo.Input("hair_length", options=list(HAIR_LENGTHS), default="medium", tooltip="Hair length."),
                io.Combo.Input("top", options=list(TOPS), default="t-shirt", tooltip="Upper garment (a dress covers the legs too)."),
                io.Combo.Input("top_color", default="white", tooltip="Colour of the top.", **color),
                io.Combo.Input("bottom", options=list(BOTTOMS), default="trousers", tooltip="Lower garment (ignored with a dress)."),
                io.Combo.Input("bottom_color", default="denim", tooltip="Colour of the bottom.", **color),
                io.Combo.Input("shoes", options=list(SHOES), default="sneakers", tooltip="Footwear."),
                io.Combo.Input("shoes_color", default="white", tooltip="Colour of the shoes.", **color),
            ],
            outputs=[ATTRIBUTES.Output(display_name="ATTRIBUTES", tooltip="The same attributes for every person.")],
        )

    @classmethod
    def execute(cls, **kw) -> io.NodeOutput:
        attrs = PersonAttributes(**kw)
        return io.NodeOutput(AttributeSource(fixed=attrs))


class SampleAttributes(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDSampleAttributes",
            display_name="RefSD Sample Attributes",
            category=f"{CATEGORY}/avatar",
            description=(
                "Draws each person's attributes from distributions you set, so a whole dataset's demographics are "
                "chosen rather than copied: gender ratio, age range, skin tones, hair, clothing. Each person gets "
                "their own draw from (seed, image index, person index): the same seed gives the same people, and a "
                "person keeps their look when others are added. Lists are 'name, name' or 'name:weight, ...'; 'all' "
                "uses RefSD's defaults."
            ),
            inputs=[
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the draws; change it for a different set of people."),
                io.Float.Input("female_probability", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Probability that a person is female."),
                io.Float.Input("age_min", default=18.0, min=1.0, max=100.0, step=1.0, tooltip="Youngest age (years)."),
                io.Float.Input("age_max", default=70.0, min=1.0, max=100.0, step=1.0, tooltip="Oldest age (years)."),
                io.String.Input("skin_tones", default="all",
                                tooltip="Monk steps to draw from, e.g. 'mst1, mst2' or 'mst3:2, mst8:1'; 'all' = uniform."),
                io.String.Input("hair_colors", default="all", tooltip="Hair colours with optional weights; 'all' = defaults."),
                io.String.Input("tops", default="all", tooltip="Tops with optional weights; 'all' = defaults."),
                io.String.Input("bottoms", default="all", tooltip="Bottoms with optional weights; 'all' = defaults."),
                io.Combo.Input("dresses_and_skirts", options=["female", "anyone", "never"], default="female",
                               tooltip="Who may be drawn a dress or a skirt."),
            ],
            outputs=[ATTRIBUTES.Output(display_name="ATTRIBUTES", tooltip="A seeded distribution, drawn per person.")],
        )

    @classmethod
    def execute(cls, seed, female_probability, age_min, age_max, skin_tones, hair_colors, tops, bottoms,
                dresses_and_skirts) -> io.NodeOutput:
        if age_min > age_max:
            raise AttributesError(f"age_min ({age_min}) is larger than age_max ({age_max}); swap them.")
        dist = AttributeDistribution(
            female_probability=female_probability,
            age_range=(age_min, age_max),
            skin_tones=_choice_weights(skin_tones, SKIN_TONE_NAMES, "skin_tones"),
            hair_colors=_choice_weights(hair_colors, list(HAIR_COLORS), "hair_colors"),
            tops=_choice_weights(tops, list(TOPS), "tops"),
            bottoms=_choice_weights(bottoms, list(BOTTOMS), "bottoms"),
            dresses_and_skirts=dresses_and_skirts,
        )
        return io.NodeOutput(AttributeSource(distribution=dist, seed=int(seed)))


class AttributePrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDAttributePrompt",
            display_name="RefSD Attribute Prompt",
            category=f"{CATEGORY}/avatar",
            description=(
                "Turns the people's attributes into SD1.5-style positive and negative prompt text for one image "
                "(\"a photo of two people: a 34 year old woman, ...; ...\"), plus any text you add. With sampled "
                "attributes it resolves exactly the people RefSD Render Avatar renders (same fits, same seed). The "
                "text is also shown on the node."
            ),
            is_output_node=True,
            inputs=[
                ATTRIBUTES.Input("attributes", tooltip="From RefSD Attributes or RefSD Sample Attributes."),
                BODY_FIT.Input("body_fit", tooltip="The fits being rendered (how many people, which ones)."),
                io.Int.Input("image_index", default=0, min=0, max=100000, tooltip="Which image of the batch."),
                io.String.Input("extra_positive", default="", multiline=True, tooltip="Text added to the positive prompt."),
                io.String.Input("extra_negative", default="", multiline=True, tooltip="Text added to the negative prompt."),
            ],
            outputs=[
                io.String.Output(display_name="positive", tooltip="Positive prompt text."),
                io.String.Output(display_name="negative", tooltip="Negative prompt text."),
            ],
        )

    @classmethod
    def execute(cls, attributes, body_fit, image_index, extra_positive, extra_negative) -> io.NodeOutput:
        if image_index >= len(body_fit):
            raise AttributesError(f"image_index {image_index} is out of range: there are {len(body_fit)} fit(s).")
        people = attributes.resolve(body_fit)[image_index]
        if not people:
            pos = ", ".join(t for t in (extra_positive.strip(), "a photo, natural light, high quality") if t)
            return io.NodeOutput(pos, extra_negative.strip())
        pos, neg = build_image_prompt(people, extra_positive, extra_negative)
        return io.NodeOutput(pos, neg, ui={"text": [pos, neg]})
