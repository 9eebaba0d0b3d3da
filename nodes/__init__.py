"""Thin ComfyUI wrappers around the ``refsd`` library, one module per stage (as ``refsd/``):
keypoints, detect, body, fit, people, render, composite, refine, evaluate.

Node IDs are stable and prefixed ``RefSD``; inputs are never reordered or removed
once shipped, so saved workflows keep working.
"""

from .body import LoadBodyModel
from .composite import Composite, CropPeople, PastePeople, PersonMask, PrivacyCheck, RemovePeople
from .detect import DetectPeople
from .evaluate import Evaluate
from .fit import FitBody, LoadBodyFit, SaveBodyFit
from .keypoints import DrawPoseKeypoints, LoadPoseKeypoints, TrackPeople
from .people import AttributePrompt, Attributes, SampleAttributes
from .refine import PersonPrompts
from .render import RenderAvatar

NODE_CLASSES = [
    LoadPoseKeypoints,
    DrawPoseKeypoints,
    DetectPeople,
    TrackPeople,
    LoadBodyModel,
    FitBody,
    SaveBodyFit,
    LoadBodyFit,
    Attributes,
    SampleAttributes,
    RenderAvatar,
    AttributePrompt,
    PersonMask,
    RemovePeople,
    Composite,
    PrivacyCheck,
    CropPeople,
    PastePeople,
    PersonPrompts,
    Evaluate,
]
