"""Thin ComfyUI wrappers around the ``refsd`` library, one module per stage.

Node IDs are stable and prefixed ``RefSD``; inputs are never reordered or removed
once shipped, so saved workflows keep working.
"""

from .avatar import AttributePrompt, Attributes, RenderAvatar, SampleAttributes
from .body import FitBody, LoadBodyFit, LoadBodyModel, SaveBodyFit
from .composite import Composite, CropPeople, PastePeople, PersonMask, PrivacyCheck, RemovePeople
from .keypoints import LoadPoseKeypoints
from .pose import DrawPoseKeypoints
from .refine import PersonPrompts

NODE_CLASSES = [
    LoadPoseKeypoints,
    DrawPoseKeypoints,
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
]
