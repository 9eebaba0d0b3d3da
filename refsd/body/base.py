"""Body model interface shared by every backend (Anny, SMPL-X).

Coordinate convention (all backends)
------------------------------------
* Metres. **Y up, the body facing +Z** at zero ``global_orient`` (SMPL's convention).
  The subject's left side is on **+X** (for a body facing +Z).
* The root joint (pelvis) sits exactly at ``transl``; ``global_orient`` rotates the body
  about it. So with ``transl = 0`` the pelvis is at the origin.
* ``body_pose`` holds one axis-angle per entry of :attr:`BodyModel.pose_joint_names`: the
  joint's rotation relative to its parent, expressed in the world-aligned axes of the rest
  pose (SMPL's local rotations). All zeros is the backend's rest pose: a **T-pose for
  SMPL-X**, an **A-pose (arms ~45 deg down) for Anny**.
* Left/right in every name (joints, keypoints, part labels) are the subject's anatomical
  sides.

Keypoints
---------
``coco18`` / ``body25`` follow OpenPose (``refsd.keypoints.COCO18_NAMES`` /
``BODY25_NAMES``). The Neck is always the midpoint of the two shoulders (as DWPose/OpenPose
derive it). ``hands`` is ``(B, 2, 21, 3)``: left then right hand, OpenPose hand order
(:data:`HAND21_NAMES`). ``face`` is ``(B, 68, 3)`` in iBUG-68 order (the first 68 points of
OpenPose's 70-point face; ``refsd.keypoints.face68_to_face70`` adds the pupils). Points a
backend cannot produce are not NaN: they hold a finite placeholder and are False in
``kp_valid[format]`` -- always multiply the per-point loss by that mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..errors import RefSDError
from ..keypoints import BODY25_NAMES, BODY25_TO_COCO18, COCO18_NAMES

__all__ = [
    "BodyModel",
    "BodyModelError",
    "BodyOutput",
    "PART_NAMES",
    "PART_INDEX",
    "POSE_JOINT_NAMES",
    "POSE_JOINT_PARENTS",
    "HAND_JOINT_NAMES",
    "HAND21_NAMES",
    "COCO18_NAMES",
    "BODY25_NAMES",
    "BODY25_TO_COCO18",
    "FACE68_SIZE",
    "split_head_labels",
]


class BodyModelError(RefSDError):
    """A body model cannot be built or was called with bad input."""


#: Per-vertex body-part labels: ``BodyModel.part_labels[v]`` indexes this tuple. There is no
#: "background" entry; renderers that need one use ``-1`` or ``len(PART_NAMES)``.
#:
#: * ``head``: the rest of the head (ears, nape, sides), ``face``: the facial area in front
#:   of the ears and below the hairline, ``hair``: the scalp where hair grows (the models
#:   have no hair geometry; this region is where a renderer or clothing step puts it),
#:   ``eyes``: eyeballs.
#: * ``neck``; ``torso`` (chest, belly, back, pelvis, buttocks, the shoulder caps up to the
#:   armpit).
#: * ``*_l`` / ``*_r``: the subject's left / right limb segments. ``upper_arm``: shoulder
#:   joint to elbow, ``lower_arm``: elbow to wrist, ``hand``: wrist and fingers,
#:   ``upper_leg``: hip to knee, ``lower_leg``: knee to ankle, ``foot``: ankle and toes.
PART_NAMES: tuple[str, ...] = (
    "head", "face", "hair", "eyes", "neck", "torso",
    "upper_arm_l", "upper_arm_r", "lower_arm_l", "lower_arm_r", "hand_l", "hand_r",
    "upper_leg_l", "upper_leg_r", "lower_leg_l", "lower_leg_r", "foot_l", "foot_r",
)  # fmt: skip
PART_INDEX: dict[str, int] = {n: i for i, n in enumerate(PART_NAMES)}

#: The joints a fitter optimises (``body_pose[:, j]`` rotates joint ``POSE_JOINT_NAMES[j]``),
#: in SMPL-X body order (SMPL-X joints 1..21). The root (pelvis) is ``global_orient``.
POSE_JOINT_NAMES: tuple[str, ...] = (
    "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip

#: Parent of each entry of ``[root] + POSE_JOINT_NAMES`` (index 0 = root/pelvis), SMPL-X's tree.
POSE_JOINT_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

#: The 15 finger joints of one hand, SMPL-X / MANO order (``hand_pose[:, side, j]``).
HAND_JOINT_NAMES: tuple[str, ...] = (
    "index1", "index2", "index3", "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3", "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)  # fmt: skip

#: OpenPose / COCO-WholeBody hand order (21 points per hand).
HAND21_NAMES: tuple[str, ...] = (
    "Wrist",
    "Thumb1", "Thumb2", "Thumb3", "Thumb4",
    "Index1", "Index2", "Index3", "Index4",
    "Middle1", "Middle2", "Middle3", "Middle4",
    "Ring1", "Ring2", "Ring3", "Ring4",
    "Pinky1", "Pinky2", "Pinky3", "Pinky4",
)  # fmt: skip

#: Number of face landmarks (iBUG-68 order: 0-16 jaw contour, 17-26 brows, 27-35 nose,
#: 36-47 eyes, 48-67 mouth).
FACE68_SIZE = 68


@dataclass
class BodyOutput:
    """What :meth:`BodyModel.forward` returns (``B`` people; all in the convention above).

    Attributes:
        vertices: ``(B, V, 3)`` posed mesh vertices.
        joints: ``(B, K, 3)`` the backend's own skeleton joints, named by
            :attr:`BodyModel.joint_names` (SMPL-X: its 55 joints; Anny: its bone heads).
        pose_joints: ``(B, 1 + J, 3)`` the root (pelvis) then the joints of
            :attr:`BodyModel.pose_joint_names`, i.e. the centres ``body_pose`` rotates about.
        coco18: ``(B, 18, 3)`` OpenPose COCO-18 points.
        body25: ``(B, 25, 3)`` OpenPose BODY_25 points.
        hands: ``(B, 2, 21, 3)`` left, right hand in OpenPose hand order, or None.
        face: ``(B, 68, 3)`` iBUG-68 face landmarks, or None.
        kp_valid: per format (``"coco18"``, ``"body25"``, and ``"hands"`` / ``"face"`` when
            present) a bool tensor of shape ``(18,)``, ``(25,)``, ``(2, 21)``, ``(68,)``:
            True where the backend defines the point. Invalid points are finite
            placeholders; mask them out of losses.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    pose_joints: torch.Tensor
    coco18: torch.Tensor
    body25: torch.Tensor
    hands: torch.Tensor | None = None
    face: torch.Tensor | None = None
    kp_valid: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.vertices.shape[0])


class BodyModel(torch.nn.Module):
    """Abstract body model. Build one with :func:`refsd.body.get_body_model`.

    Subclasses set, in ``__init__``:

    * ``model_id`` (str), ``pose_joint_names`` (:data:`POSE_JOINT_NAMES`), ``shape_names``,
      ``joint_names`` (names of ``BodyOutput.joints``),
    * buffers ``faces`` (LongTensor ``(F, 3)``, triangles, counter-clockwise seen from
      outside) and ``part_labels`` (LongTensor ``(V,)`` into :data:`PART_NAMES`),
    * ``hand_pose_shape``: the per-person shape of ``hand_pose`` (``(2, 15, 3)`` axis-angle,
      or ``(2, n_pca)`` for SMPL-X with PCA hands), or None if the model has no hand pose,
    * ``expression_dim``: size of ``expression`` (0: the model has none).

    The model lives on the device/dtype given at construction; ``.to()`` works as for any
    ``nn.Module``. Every output is differentiable w.r.t. every input tensor.
    """

    model_id: str = "abstract"
    pose_joint_names: tuple[str, ...] = POSE_JOINT_NAMES
    shape_names: tuple[str, ...] = ()
    joint_names: tuple[str, ...] = ()
    hand_pose_shape: tuple[int, ...] | None = None
    expression_dim: int = 0
    #: Name of the rest pose that zero ``body_pose`` gives ("T-pose" or "A-pose").
    rest_pose: ClassVar[str] = "T-pose"

    faces: torch.Tensor
    part_labels: torch.Tensor

    # -- properties -------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return int(self.part_labels.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def num_pose_joints(self) -> int:
        return len(self.pose_joint_names)

    @property
    def num_shape(self) -> int:
        return len(self.shape_names)

    @property
    def device(self) -> torch.device:
        return self.faces.device

    @property
    def dtype(self) -> torch.dtype:
        for b in self.buffers():
            if b.is_floating_point():
                return b.dtype
        return torch.get_default_dtype()

    def part_mask(self, name: str) -> torch.Tensor:
        """Bool ``(V,)`` mask of the vertices labelled ``name`` (one of :data:`PART_NAMES`)."""
        if name not in PART_INDEX:
            raise BodyModelError(f"Unknown body part {name!r}. Use one of: {', '.join(PART_NAMES)}.")
        return self.part_labels == PART_INDEX[name]

    # -- parameters -------------------------------------------------------------------
    def default_shape(self, batch_size: int = 1) -> torch.Tensor:
        """``(B, S)`` the average/neutral shape."""
        raise NotImplementedError

    def shape_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)``, each ``(S,)``: the range in which shapes look human. A fitter
        should clamp (or softly penalise) the shape to it."""
        raise NotImplementedError

    def zero_params(self, batch_size: int = 1) -> dict[str, torch.Tensor]:
        """Rest-pose parameters for ``batch_size`` people (a starting point for a fitter):
        keys ``global_orient, body_pose, shape, transl`` and, where the model has them,
        ``hand_pose`` and ``expression``."""
        kw = {"device": self.device, "dtype": self.dtype}
        out = {
            "global_orient": torch.zeros(batch_size, 3, **kw),
            "body_pose": torch.zeros(batch_size, self.num_pose_joints, 3, **kw),
            "shape": self.default_shape(batch_size),
            "transl": torch.zeros(batch_size, 3, **kw),
        }
        if self.hand_pose_shape is not None:
            out["hand_pose"] = torch.zeros(batch_size, *self.hand_pose_shape, **kw)
        if self.expression_dim:
            out["expression"] = torch.zeros(batch_size, self.expression_dim, **kw)
        return out

    def hand_axes(self) -> dict[str, torch.Tensor] | None:
        """The model's rest hand geometry as :func:`refsd.body.hands.hand_axes` (cached), or None
        when the model has no axis-angle hand pose."""
        if self.hand_pose_shape is None or tuple(self.hand_pose_shape) != (2, 15, 3):
            return None
        cached = self.__dict__.get("_hand_axes_cache")
        if cached is None:
            from .hands import hand_axes

            with torch.no_grad():
                out = self(**self.zero_params(1))
            if out.hands is None:
                return None
            cached = hand_axes(out.hands[0].detach().to("cpu", torch.float64))
            self.__dict__["_hand_axes_cache"] = cached
        return cached

    def relaxed_hand_pose(self, batch_size: int = 1) -> torch.Tensor | None:
        """``(B, *hand_pose_shape)``: the hand pose of a relaxed hand at rest (fingers in the
        resting cascade, close together; :mod:`refsd.body.hands`), or None when the model has no
        hand pose. This is what an avatar shows when no hand keypoints drive its fingers; the zero
        hand pose is the model's flat modelling pose."""
        if self.hand_pose_shape is None:
            return None
        kw = {"device": self.device, "dtype": self.dtype}
        pose = self.__dict__.get("_relaxed_hand_cache")  # fit_output asks for it on every render
        if pose is None:
            axes = self.hand_axes()
            if axes is None:
                pose = torch.zeros(*self.hand_pose_shape, dtype=torch.float64)
            else:
                from .hands import hand_pose_from_angles, relaxed_angles

                pose = hand_pose_from_angles(axes, *relaxed_angles(axes))
            self.__dict__["_relaxed_hand_cache"] = pose
        return pose.to(**kw).expand(batch_size, *self.hand_pose_shape).clone()

    def forward(
        self,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        shape: torch.Tensor,
        transl: torch.Tensor,
        hand_pose: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
    ) -> BodyOutput:
        """Pose and shape ``B`` people.

        Args:
            global_orient: ``(B, 3)`` axis-angle of the root (pelvis), world axes.
            body_pose: ``(B, J, 3)`` axis-angle per :attr:`pose_joint_names` entry (relative to
                the parent, in the rest pose's world-aligned axes; zeros = rest pose).
            shape: ``(B, S)`` per :attr:`shape_names` (start from :meth:`default_shape`,
                keep inside :meth:`shape_bounds`).
            transl: ``(B, 3)`` where the pelvis goes (metres).
            hand_pose: ``(B, *hand_pose_shape)`` or None (zeros). Axis-angle layout:
                ``[:, 0]`` left hand, ``[:, 1]`` right hand, joints in :data:`HAND_JOINT_NAMES`
                order, same axis convention as ``body_pose``.
            expression: ``(B, expression_dim)`` or None (zeros); only models with
                ``expression_dim > 0`` accept it.
        All inputs must be on the model's device with the model's dtype.
        """
        raise NotImplementedError

    # -- input checking ---------------------------------------------------------------
    def _check_inputs(
        self,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        shape: torch.Tensor,
        transl: torch.Tensor,
        hand_pose: torch.Tensor | None,
        expression: torch.Tensor | None,
    ) -> int:
        """Validate shapes; returns the batch size. Raises BodyModelError naming the fix."""
        named = {"global_orient": global_orient, "body_pose": body_pose, "shape": shape, "transl": transl}
        for name, t in named.items():
            if not isinstance(t, torch.Tensor):
                raise BodyModelError(
                    f"{self.model_id}: {name} must be a torch.Tensor, got {type(t).__name__}. "
                    "Convert it with torch.as_tensor(..., device=model.device, dtype=model.dtype)."
                )
        batch = int(global_orient.shape[0]) if global_orient.ndim else -1
        expected = {
            "global_orient": (batch, 3),
            "body_pose": (batch, self.num_pose_joints, 3),
            "shape": (batch, self.num_shape),
            "transl": (batch, 3),
        }
        if hand_pose is not None:
            if self.hand_pose_shape is None:
                raise BodyModelError(f"{self.model_id}: this model has no hand pose; pass hand_pose=None.")
            named["hand_pose"] = hand_pose
            expected["hand_pose"] = (batch, *self.hand_pose_shape)
        if expression is not None:
            if not self.expression_dim:
                raise BodyModelError(
                    f"{self.model_id}: this model has no expression parameters; pass expression=None "
                    "(use the smplx backend for facial expressions)."
                )
            named["expression"] = expression
            expected["expression"] = (batch, self.expression_dim)
        for name, t in named.items():
            if not isinstance(t, torch.Tensor):
                raise BodyModelError(f"{self.model_id}: {name} must be a torch.Tensor, got {type(t).__name__}.")
            if tuple(t.shape) != expected[name]:
                want = "(" + ", ".join("B" if i == 0 else str(s) for i, s in enumerate(expected[name])) + ")"
                raise BodyModelError(
                    f"{self.model_id}: {name} has shape {tuple(t.shape)}, expected {want} with the same "
                    f"batch size B for every input (B = {batch} from global_orient). Reshape it; "
                    "model.zero_params(B) shows the expected shapes."
                )
            if t.dtype != self.dtype:
                raise BodyModelError(
                    f"{self.model_id}: {name} has dtype {t.dtype} but the model uses {self.dtype}. Convert the "
                    "inputs with .to(model.dtype) (or build the model with the inputs' dtype)."
                )
            if t.device != self.device:
                raise BodyModelError(
                    f"{self.model_id}: {name} is on {t.device} but the model is on {self.device}. "
                    "Move the inputs with .to(model.device) (or build the model on their device)."
                )
        return batch


# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------


def split_head_labels(
    rest_vertices: torch.Tensor,
    labels: torch.Tensor,
    eye_centers: torch.Tensor,
) -> torch.Tensor:
    """Split the ``head`` label of ``labels`` into head / face / hair geometrically.

    Works on the rest-pose mesh in the shared convention (Y up, facing +Z):

    * hairline height: 60% of the way from the eyes to the top of the head;
    * ``face``: head vertices in front of the ears (front 40% of the head's depth) and
      below the hairline;
    * ``hair``: head vertices above the hairline, plus the back of the head above the
      eyes (the scalp);
    * the rest (ears, nape, the underside of the jaw at the back) stays ``head``.

    Args:
        rest_vertices: ``(V, 3)``.
        labels: ``(V,)`` labels into PART_NAMES; only ``head`` vertices are changed.
        eye_centers: ``(2, 3)`` (or ``(3,)``) position(s) of the eyes.
    Returns:
        A new ``(V,)`` label tensor.
    """
    out = labels.clone()
    head = labels == PART_INDEX["head"]
    if not bool(head.any()):
        return out
    v = rest_vertices.detach().to(torch.float64)
    eye = eye_centers.detach().to(torch.float64).reshape(-1, 3).mean(0)
    hv = v[head]
    top = hv[:, 1].max()
    front, back = hv[:, 2].max(), hv[:, 2].min()
    hairline = eye[1] + 0.6 * (top - eye[1])
    face_z = back + 0.6 * (front - back)
    mid_z = back + 0.5 * (front - back)
    y, z = v[:, 1], v[:, 2]
    face = head & (z > face_z) & (y < hairline)
    hair = head & ~face & ((y > hairline) | ((y > eye[1]) & (z < mid_z)))
    out[face] = PART_INDEX["face"]
    out[hair] = PART_INDEX["hair"]
    return out
