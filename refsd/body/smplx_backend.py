"""SMPL-X body model backend (optional; the user supplies the model files).

The model files, where they are looked for and how they are loaded (``.npz`` only, never
unpickled) are handled by :mod:`refsd.body.smplx_files`; :class:`SMPLXBody` builds the model
from the loaded arrays and runs it with smplx's tensor functions (``smplx.lbs``).

Outputs (convention of :mod:`refsd.body.base`: Y up, facing +Z, pelvis at ``transl``; SMPL-X
is natively Y up / facing +Z, so only the pelvis offset is removed):

* ``joints``: the 55 SMPL-X joints (``smplx.joint_names.JOINT_NAMES[:55]``);
  ``pose_joints`` = ``joints[:, :22]``.
* ``body25``: smplify-x's ``smpl_to_openpose`` mapping (:data:`SMPLX_TO_BODY25`, indices into
  smplx's joint output with its extra vertex joints), except the Neck, which is the midpoint
  of the shoulders (OpenPose's definition) rather than SMPL-X joint 12. ``coco18`` is taken
  from ``body25``.
* ``hands``: smplify-x's hand mapping (:data:`SMPLX_TO_HAND21`: wrist, finger joints and
  smplx's fingertip vertices).
* ``face``: iBUG-68: points 17..67 are SMPL-X's 51 landmarks (its landmark embedding), 0..16
  the 17 jaw-contour landmarks from SMPL-X's dynamic contour table (chosen by the head's yaw
  as smplx/smplify-x do; computed from the global orientation too, so they assume a Y-up
  camera frame). If the file has no contour table, points 0..16 are invalid.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .base import BODY25_TO_COCO18, PART_INDEX, BodyModel, BodyModelError, BodyOutput, split_head_labels
from .smplx_files import (
    NUM_BODY_JOINTS,
    NUM_HAND_JOINTS,
    NUM_JOINTS,
    SMPLX_DOWNLOAD_URL,
    SMPLX_FILE_NAMES,
    load_smplx_npz,
    smplx_model_path,
)

__all__ = [
    "SMPLXBody",
    "SMPLX_TO_BODY25",
    "SMPLX_TO_HAND21",
    "SMPLX_JOINT_PARTS",
]

#: Vertex-based extra joints appended by smplx (``vertex_ids['smplx']``), in its order.
_EXTRA_VERTEX_KEYS = (
    "nose", "reye", "leye", "rear", "lear",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky",
    "rthumb", "rindex", "rmiddle", "rring", "rpinky",
)  # fmt: skip

#: BODY_25 from smplx's joint output (55 joints + the 21 extra vertex joints above), as in
#: smplify-x's ``smpl_to_openpose(model_type='smplx')``. Index 1 (Neck) is replaced by the
#: shoulders' midpoint.
SMPLX_TO_BODY25 = (55, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65)
#: OpenPose hands (left, right) from smplx's joint output, as in smplify-x (use_hands=True).
SMPLX_TO_HAND21 = (
    (20, 37, 38, 39, 66, 25, 26, 27, 67, 28, 29, 30, 68, 34, 35, 36, 69, 31, 32, 33, 70),
    (21, 52, 53, 54, 71, 40, 41, 42, 72, 43, 44, 45, 73, 49, 50, 51, 74, 46, 47, 48, 75),
)

#: Body part of each SMPL-X joint (the part of a vertex = that of its largest LBS weight).
SMPLX_JOINT_PARTS: tuple[str, ...] = (
    "torso", "upper_leg_l", "upper_leg_r", "torso", "lower_leg_l", "lower_leg_r", "torso",
    "foot_l", "foot_r", "torso", "foot_l", "foot_r", "neck", "torso", "torso", "head",
    "upper_arm_l", "upper_arm_r", "lower_arm_l", "lower_arm_r", "hand_l", "hand_r",
    "head", "eyes", "eyes",
) + ("hand_l",) * 15 + ("hand_r",) * 15  # fmt: skip



class SMPLXBody(BodyModel):
    """SMPL-X backend (see the module docstring).

    Args:
        model_dir: folder with ``SMPLX_<GENDER>.npz`` (or the ``.npz`` file itself).
        gender: ``"neutral"`` (default), ``"male"`` or ``"female"``.
        device, dtype: where the model lives.
        num_betas: shape coefficients (``shape_names`` = ``beta0..``; at most 10 for files with
            10 shape components, 300 otherwise).
        num_expression_coeffs: expression size (at most 10 / 100 likewise).
        num_pca_comps: None or 0 (default): ``hand_pose`` is full axis-angle ``(B, 2, 15, 3)``
            (left, right; SMPL-X/MANO joint order :data:`HAND_JOINT_NAMES`); n > 0: ``(B, 2, n)``
            PCA coefficients.
        flat_hand_mean: False (smplx's default): zero hand pose is the relaxed mean hand of
            the file; True: zero is the flat hand.
        use_face_contour: compute face points 0..16 from the dynamic contour (if the file has it).

    Backend-specific forward argument: ``jaw_pose`` ``(B, 3)`` axis-angle (default zero).
    """

    rest_pose = "T-pose"

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        gender: str = "neutral",
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        num_betas: int = 10,
        num_expression_coeffs: int = 10,
        num_pca_comps: int | None = None,
        flat_hand_mean: bool = False,
        use_face_contour: bool = True,
    ) -> None:
        super().__init__()
        if not dtype.is_floating_point:
            raise BodyModelError(f"smplx: dtype must be a floating-point torch dtype, got {dtype}.")
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.model_path = smplx_model_path(model_dir, gender)
        # A file passed directly decides the gender by its name.
        names = {v: k for k, v in SMPLX_FILE_NAMES.items()}
        self.gender = names.get(self.model_path.name, str(gender).lower())
        self.model_id = f"smplx-{self.gender}"
        data = load_smplx_npz(self.model_path)

        from smplx.joint_names import JOINT_NAMES
        from smplx.vertex_ids import vertex_ids

        f64 = torch.float64
        shapedirs = data["shapedirs"]
        ncols = shapedirs.shape[-1]
        if ncols < 300 + 100:  # smplx's rule: files with 10 shape + 10 expression components
            max_betas, expr_start, max_expr = 10, 10, max(0, min(10, ncols - 10))
        else:
            max_betas, expr_start, max_expr = 300, 300, 100
        if not 1 <= int(num_betas) <= min(max_betas, ncols):
            raise BodyModelError(
                f"smplx: num_betas={num_betas} but {self.model_path.name} has {min(max_betas, ncols)} shape "
                "components; pass a value in that range."
            )
        if not 0 <= int(num_expression_coeffs) <= max_expr:
            raise BodyModelError(
                f"smplx: num_expression_coeffs={num_expression_coeffs} but the file has {max_expr} expression "
                "components; pass a value in that range."
            )
        nb, ne = int(num_betas), int(num_expression_coeffs)
        dirs = np.concatenate([shapedirs[:, :, :nb], shapedirs[:, :, expr_start : expr_start + ne]], axis=2)
        self.num_betas, self.expression_dim = nb, ne
        self.shape_names = tuple(f"beta{i}" for i in range(nb))

        nv = data["v_template"].shape[0]
        self.register_buffer("v_template", torch.as_tensor(data["v_template"], dtype=f64), persistent=False)
        self.register_buffer("shapedirs", torch.as_tensor(dirs, dtype=f64), persistent=False)
        posedirs = data["posedirs"].reshape(nv * 3, -1).T
        self.register_buffer("posedirs", torch.as_tensor(np.ascontiguousarray(posedirs), dtype=f64), persistent=False)
        self.register_buffer("J_regressor", torch.as_tensor(data["J_regressor"], dtype=f64), persistent=False)
        self.register_buffer("lbs_weights", torch.as_tensor(data["weights"], dtype=f64), persistent=False)
        parents = data["kintree_table"][0].astype(np.int64)
        parents[0] = -1
        if not all(0 <= p < i for i, p in enumerate(parents[1:], start=1)):
            raise BodyModelError(
                f"smplx: {self.model_path}: kintree_table is not an SMPL-X kinematic tree (each joint's parent "
                f"must come before it). Download the SMPL-X .npz from {SMPLX_DOWNLOAD_URL}."
            )
        self.register_buffer("parents", torch.as_tensor(parents, dtype=torch.long), persistent=False)
        self.register_buffer("faces", torch.as_tensor(data["f"].astype(np.int64)), persistent=False)

        # Hands.
        self.num_pca_comps = int(num_pca_comps or 0)
        ncomp = data["hands_componentsl"].shape[0]
        if self.num_pca_comps > ncomp:
            raise BodyModelError(f"smplx: num_pca_comps={num_pca_comps} but the file has {ncomp} hand components.")
        if self.num_pca_comps:
            self.hand_pose_shape = (2, self.num_pca_comps)
            comps = np.stack(
                [data["hands_componentsl"][: self.num_pca_comps], data["hands_componentsr"][: self.num_pca_comps]]
            )
            self.register_buffer("hand_components", torch.as_tensor(comps, dtype=f64), persistent=False)
        else:
            self.hand_pose_shape = (2, NUM_HAND_JOINTS, 3)
            self.hand_components = None
        mean = np.stack([data["hands_meanl"].reshape(-1), data["hands_meanr"].reshape(-1)])
        if flat_hand_mean:
            mean = np.zeros_like(mean)
        self.flat_hand_mean = bool(flat_hand_mean)
        self.register_buffer("hand_mean", torch.as_tensor(mean, dtype=f64), persistent=False)

        # Landmarks and extra joints.
        self.register_buffer("lmk_faces_idx", torch.as_tensor(data["lmk_faces_idx"].astype(np.int64)), persistent=False)
        self.register_buffer("lmk_bary_coords", torch.as_tensor(data["lmk_bary_coords"], dtype=f64), persistent=False)
        self.num_static_landmarks = int(data["lmk_faces_idx"].shape[0])
        has_contour = (
            use_face_contour
            and "dynamic_lmk_faces_idx" in data
            and "dynamic_lmk_bary_coords" in data
            and data["dynamic_lmk_faces_idx"].shape[1] == 17
        )
        self.use_face_contour = bool(has_contour)
        if has_contour:
            self.register_buffer(
                "dyn_lmk_faces_idx", torch.as_tensor(data["dynamic_lmk_faces_idx"].astype(np.int64)), persistent=False
            )
            self.register_buffer(
                "dyn_lmk_bary_coords", torch.as_tensor(data["dynamic_lmk_bary_coords"], dtype=f64), persistent=False
            )
            from smplx.utils import find_joint_kin_chain

            chain = find_joint_kin_chain(12, parents.tolist())
            self.register_buffer("neck_kin_chain", torch.tensor(chain, dtype=torch.long), persistent=False)
        ids = vertex_ids["smplx"]
        self.register_buffer(
            "extra_vertex_ids", torch.tensor([ids[k] for k in _EXTRA_VERTEX_KEYS], dtype=torch.long), persistent=False
        )
        self.joint_names = tuple(JOINT_NAMES[:NUM_JOINTS])

        # Face points: iBUG 17..67 from the 51 static landmarks when there are 51.
        face_valid = torch.zeros(68, dtype=torch.bool)
        if self.num_static_landmarks == 51:
            face_valid[17:] = True
            face_valid[:17] = self.use_face_contour
        self.register_buffer("face_valid", face_valid, persistent=False)

        # Part labels from the LBS weights.
        joint_part = torch.tensor([PART_INDEX[p] for p in SMPLX_JOINT_PARTS], dtype=torch.long)
        labels = joint_part[self.lbs_weights.argmax(dim=1)]
        with torch.no_grad():
            j_rest = self.J_regressor @ self.v_template
        labels = split_head_labels(self.v_template, labels, j_rest[[23, 24]])
        self.register_buffer("part_labels", labels, persistent=False)

        self.to(device=device, dtype=dtype)

    # -- parameters ---------------------------------------------------------------------
    def default_shape(self, batch_size: int = 1) -> torch.Tensor:
        return torch.zeros(batch_size, self.num_betas, device=self.device, dtype=self.dtype)

    def shape_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        kw = {"device": self.device, "dtype": self.dtype}
        return torch.full((self.num_betas,), -3.0, **kw), torch.full((self.num_betas,), 3.0, **kw)

    # -- forward ------------------------------------------------------------------------
    def hand_axes(self) -> dict[str, torch.Tensor] | None:
        # The file's mean hand is already a relaxed hand (flat_hand_mean=False, smplx's default)
        # and PCA hands are offsets from it: zero is relaxed there. Only the flat hand needs angles.
        if not self.flat_hand_mean or self.hand_components is not None:
            return None
        return super().hand_axes()

    def forward(
        self,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        shape: torch.Tensor,
        transl: torch.Tensor,
        hand_pose: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        jaw_pose: torch.Tensor | None = None,
    ) -> BodyOutput:
        from smplx.lbs import find_dynamic_lmk_idx_and_bcoords, lbs, vertices2landmarks

        batch = self._check_inputs(global_orient, body_pose, shape, transl, hand_pose, expression)
        dtype, device = global_orient.dtype, global_orient.device
        if hand_pose is None:
            hand_pose = torch.zeros(batch, *self.hand_pose_shape, dtype=dtype, device=device)
        if self.hand_components is not None:
            hands_aa = torch.einsum("bsn,snk->bsk", hand_pose, self.hand_components.to(dtype))
        else:
            hands_aa = hand_pose.reshape(batch, 2, 3 * NUM_HAND_JOINTS)
        hands_aa = hands_aa + self.hand_mean.to(dtype)[None]
        if jaw_pose is None:
            jaw_pose = torch.zeros(batch, 3, dtype=dtype, device=device)
        elif tuple(jaw_pose.shape) != (batch, 3):
            raise BodyModelError(f"smplx: jaw_pose has shape {tuple(jaw_pose.shape)}, expected ({batch}, 3).")
        eyes = torch.zeros(batch, 6, dtype=dtype, device=device)
        full_pose = torch.cat(
            [global_orient, body_pose.reshape(batch, -1), jaw_pose, eyes, hands_aa.reshape(batch, -1)], dim=1
        )
        if expression is None:
            expression = torch.zeros(batch, self.expression_dim, dtype=dtype, device=device)
        coeffs = torch.cat([shape, expression], dim=1)
        verts, joints = lbs(
            coeffs,
            full_pose,
            self.v_template,
            self.shapedirs,
            self.posedirs,
            self.J_regressor,
            self.parents,
            self.lbs_weights,
            pose2rot=True,
        )
        landmarks = vertices2landmarks(
            verts,
            self.faces,
            self.lmk_faces_idx.unsqueeze(0).expand(batch, -1).contiguous(),
            self.lmk_bary_coords.unsqueeze(0).expand(batch, -1, -1),
        )
        if self.use_face_contour:
            dyn_faces, dyn_bary = find_dynamic_lmk_idx_and_bcoords(
                verts, full_pose, self.dyn_lmk_faces_idx, self.dyn_lmk_bary_coords, self.neck_kin_chain, pose2rot=True
            )
            contour = vertices2landmarks(verts, self.faces, dyn_faces, dyn_bary)
        else:
            contour = verts.new_zeros(batch, 17, 3)
        extra = verts[:, self.extra_vertex_ids]
        all_joints = torch.cat([joints, extra], dim=1)  # smplx's joint output, indices 0..75

        offset = transl[:, None, :] - joints[:, :1, :]
        verts = verts + offset
        all_joints = all_joints + offset
        landmarks = landmarks + offset
        contour = contour + offset

        body25 = all_joints[:, list(SMPLX_TO_BODY25)]
        neck = 0.5 * (all_joints[:, 16] + all_joints[:, 17])
        body25 = torch.cat([body25[:, :1], neck[:, None], body25[:, 2:]], dim=1)
        coco18 = body25[:, list(BODY25_TO_COCO18)]
        hands = all_joints[:, torch.tensor(SMPLX_TO_HAND21, device=device)]
        if self.num_static_landmarks == 51:
            face = torch.cat([contour[:, :17], landmarks], dim=1)
        else:
            face = None

        kp_valid = {
            "coco18": torch.ones(18, dtype=torch.bool, device=device),
            "body25": torch.ones(25, dtype=torch.bool, device=device),
            "hands": torch.ones(2, 21, dtype=torch.bool, device=device),
        }
        if face is not None:
            kp_valid["face"] = self.face_valid.clone()
        return BodyOutput(
            vertices=verts,
            joints=all_joints[:, :NUM_JOINTS],
            pose_joints=all_joints[:, : 1 + NUM_BODY_JOINTS],
            coco18=coco18,
            body25=body25,
            hands=hands,
            face=face,
            kp_valid=kp_valid,
        )
