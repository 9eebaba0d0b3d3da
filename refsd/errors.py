"""Error types shared by the RefSD library.

Every error RefSD raises on bad input names the problem and the fix, so a
ComfyUI user sees something actionable in the node's error box.
"""


class RefSDError(ValueError):
    """Base class for errors caused by bad input or missing files."""


class KeypointError(RefSDError):
    """POSE_KEYPOINT data or a keypoint file is malformed."""
