"""Anny body model backend (default): NAVER's Anny (Apache-2.0 code, CC0 assets).

:class:`AnnyBody` runs Anny with RefSD's pose parameterisation (fitter joints driving Anny
bones, axis-angles in RefSD's frame) and derives RefSD's outputs (bone heads, COCO-18 /
BODY_25 from Anny's keypoint regressor, hand keypoints, part labels). The shape vector
(Anny's phenotypes), the skeleton and bone maps are described in :mod:`refsd.body.anny_rig`;
the model data cache (built on first use, ~1-2 minutes) in :mod:`refsd.body.anny_cache`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .anny_cache import ProgressFn, _load_model_data, ensure_anny_cache
from .anny_rig import (
    _COCO18_KEYS,
    _FOOT6_KEYS,
    _HAND21_FINGERS,
    _PARALLEL_POSE_JOINTS,
    ANNY_HAND_BONES,
    ANNY_POSE_BONES,
    ANNY_RIG,
    ANNY_SHAPE_NAMES,
    ANNY_TO_REFSD,
    DEFAULT_AGE_YEARS,
    _bone_part,
    _eye_helper_mask,
    age_from_years,
)
from .base import (
    HAND_JOINT_NAMES,
    PART_INDEX,
    POSE_JOINT_NAMES,
    BodyModel,
    BodyModelError,
    BodyOutput,
    split_head_labels,
)

__all__ = ["AnnyBody"]

logger = logging.getLogger(__name__)


class AnnyBody(BodyModel):
    """Anny backend. Shape vector and skeleton: see :mod:`refsd.body.anny_rig`; model data
    cache: see :mod:`refsd.body.anny_cache`.

    Args:
        device, dtype: where the model lives (default CPU / float32).
        cache_dir: Anny cache folder (see :func:`refsd.body.anny_cache.resolve_anny_cache_dir`).
        progress: ``progress(fraction, message)`` for the first-use cache build.
        skinning: ``"lbs"`` (default; dense PyTorch skinning, works with autograd and
            ``torch.func``) or ``"warp_lbs"`` (Anny's NVIDIA Warp kernel: less memory, no
            ``torch.func`` support).

    Outputs: ``joints`` are the heads of Anny's 104 bones (:attr:`joint_names`); ``coco18`` /
    ``body25`` come from Anny's shipped COCO(-WholeBody) keypoint regressor (mesh vertex
    blends; BODY_25's feet from its big toe / small toe / heel points, MidHip = mean of the
    hips, Neck = mean of the shoulders); ``hands`` from the finger bone heads (wrist, finger
    joints) and one mesh vertex per fingertip; no ``face`` landmarks (None).
    """

    model_id = "anny"
    rest_pose = "A-pose"

    def __init__(
        self,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        cache_dir: str | os.PathLike | None = None,
        progress: ProgressFn | None = None,
        skinning: str = "lbs",
    ) -> None:
        super().__init__()
        if skinning not in ("lbs", "warp_lbs"):
            raise BodyModelError(f"anny: unknown skinning {skinning!r}; use 'lbs' or 'warp_lbs'.")
        if not dtype.is_floating_point:
            raise BodyModelError(f"anny: dtype must be a floating-point torch dtype, got {dtype}.")
        device = torch.device(device) if device is not None else torch.device("cpu")

        import anny
        from anny.models.model_data import RigConfig

        path = ensure_anny_cache(cache_dir, progress)
        try:
            data = _load_model_data(path)
        except Exception as e:  # noqa: BLE001 - a broken cache file is rebuilt once
            logger.warning("Anny cache file %s is unreadable (%s); rebuilding it.", path, e)
            try:
                path.unlink()
            except OSError:
                pass
            path = ensure_anny_cache(cache_dir, progress)
            data = _load_model_data(path)
        rig = RigConfig.from_string(ANNY_RIG)
        model = anny.Anny.from_model_data(
            data,
            skinning_method=skinning,
            pose_parameterization="local-ref",
            bone_orientation=rig.bone_orientation,
            root_identity_orientation=rig.root_identity_orientation,
            phenotypes="default",
        )
        if tuple(model.phenotype_labels) != ANNY_SHAPE_NAMES:
            raise BodyModelError(
                f"anny: unexpected phenotype labels {model.phenotype_labels}; this RefSD release expects "
                f"{ANNY_SHAPE_NAMES}. Install the anny version RefSD pins (pip install 'anny>=0.6.2')."
            )
        self.anny = model
        self.cache_file = path
        self.shape_names = ANNY_SHAPE_NAMES
        self.joint_names = tuple(model.bone_labels)
        self.hand_pose_shape = (2, len(HAND_JOINT_NAMES), 3)
        self.expression_dim = 0
        bone = {name: i for i, name in enumerate(model.bone_labels)}

        # Pose mapping: rows of the (B, 1 + 21 + 30, 3) source stack -> (bone, fraction).
        src_idx, bone_idx, fraction = [0], [bone["root"]], [1.0]
        pose_joint_heads: list[list[int]] = [[bone["root"]]]
        for j, name in enumerate(POSE_JOINT_NAMES):
            bones = ANNY_POSE_BONES[name]
            parallel = name in _PARALLEL_POSE_JOINTS
            for b in bones:
                src_idx.append(1 + j)
                bone_idx.append(bone[b])
                fraction.append(1.0 if parallel else 1.0 / len(bones))
            pose_joint_heads.append([bone[b] for b in bones] if parallel else [bone[bones[0]]])
        for s, side in enumerate((".L", ".R")):
            for j, name in enumerate(HAND_JOINT_NAMES):
                src_idx.append(1 + len(POSE_JOINT_NAMES) + 15 * s + j)
                bone_idx.append(bone[ANNY_HAND_BONES[name] + side])
                fraction.append(1.0)
        if len(set(bone_idx)) != len(bone_idx):
            raise AssertionError("an Anny bone is driven twice")  # programming error
        self.num_bones = len(model.bone_labels)
        self.register_buffer("_src_idx", torch.tensor(src_idx, dtype=torch.long), persistent=False)
        self.register_buffer("_bone_idx", torch.tensor(bone_idx, dtype=torch.long), persistent=False)
        self.register_buffer("_fraction", torch.tensor(fraction, dtype=torch.float64), persistent=False)
        # pose_joints: mean of these bone heads per entry (padded with -1).
        width = max(len(h) for h in pose_joint_heads)
        pj = torch.full((len(pose_joint_heads), width), -1, dtype=torch.long)
        for i, heads in enumerate(pose_joint_heads):
            pj[i, : len(heads)] = torch.tensor(heads)
        self.register_buffer("_pose_joint_heads", pj, persistent=False)
        self.register_buffer("_to_refsd", torch.tensor(ANNY_TO_REFSD, dtype=torch.float64), persistent=False)

        # Faces: triangles (the topology is triangulated); keep only real geometry.
        faces = torch.as_tensor(model.faces, dtype=torch.long).reshape(-1, 3)
        self.register_buffer("faces", faces.clone(), persistent=False)

        # Keypoint regressor (COCO-17 + 6 foot points) on the model's vertices.
        reg_path = Path(anny.__file__).parent / "data" / "keypoints" / "coco.pth"
        kp = torch.load(reg_path, map_location="cpu", weights_only=True)
        base_idx = model.base_mesh_vertex_indices.detach().cpu().long()
        keys = [k for k in _COCO18_KEYS if k is not None] + list(_FOOT6_KEYS)
        rows = []
        for k in keys:
            w = kp[k].to(torch.float64)[base_idx]
            total = float(w.sum())
            if abs(total - 1.0) > 1e-3:
                raise BodyModelError(
                    f"anny: keypoint regressor entry {k!r} sums to {total:.4f} on the model's vertices "
                    "(expected 1). Reinstall anny (pip install --force-reinstall 'anny>=0.6.2')."
                )
            rows.append(w / total)
        self._kp_keys = tuple(keys)
        self.register_buffer("_kp_weights", torch.stack(rows), persistent=False)

        # Rest mesh (default shape) in RefSD's frame, for labels and fingertip vertices.
        with torch.no_grad():
            rest = self._run(torch.zeros(1, len(src_idx), 3, dtype=torch.float64), self._default_shape_f64(1))
        rest_v = rest["vertices"][0]
        rest_heads = rest["heads"][0]

        # Fingertip vertices: per distal finger bone, the vertex it dominates that lies
        # furthest along the bone's direction.
        vb_idx = model.vertex_bone_indices.detach().cpu().long()
        vb_w = model.vertex_bone_weights.detach().cpu().to(torch.float64)
        dominant = vb_idx.gather(1, vb_w.argmax(dim=1, keepdim=True))[:, 0]
        tips = []
        for side in (".L", ".R"):
            for chain in _HAND21_FINGERS:
                distal, middle = bone[chain[2] + side], bone[chain[1] + side]
                cand = torch.nonzero(dominant == distal)[:, 0]
                if cand.numel() == 0:
                    raise BodyModelError(f"anny: no vertex is skinned to {chain[2] + side}; reinstall anny.")
                direction = rest_heads[distal] - rest_heads[middle]
                score = (rest_v[cand] - rest_heads[distal]) @ direction
                tips.append(int(cand[score.argmax()]))
        self.register_buffer("_tip_vertices", torch.tensor(tips, dtype=torch.long), persistent=False)
        hand_heads = []
        for side in (".L", ".R"):
            heads = [bone["wrist" + side]]
            for chain in _HAND21_FINGERS:
                heads += [bone[c + side] for c in chain] + [-1]
            hand_heads.append(heads)
        self.register_buffer("_hand_heads", torch.tensor(hand_heads, dtype=torch.long), persistent=False)

        # Part labels: dominant bone -> part; eye helper vertices -> eyes; head split.
        bone_part = torch.tensor([PART_INDEX[_bone_part(b)] for b in model.bone_labels], dtype=torch.long)
        labels = bone_part[dominant]
        eyes = _eye_helper_mask(base_idx)
        labels[eyes] = PART_INDEX["eyes"]
        eye_centers = rest_heads[[bone["eye.L"], bone["eye.R"]]]
        labels = split_head_labels(rest_v, labels, eye_centers)
        self.register_buffer("part_labels", labels, persistent=False)

        self.to(device=device, dtype=dtype)

    # -- parameters ---------------------------------------------------------------------
    def _default_shape_f64(self, batch_size: int) -> torch.Tensor:
        s = torch.full((batch_size, len(ANNY_SHAPE_NAMES)), 0.5, dtype=torch.float64)
        s[:, ANNY_SHAPE_NAMES.index("age")] = float(age_from_years(DEFAULT_AGE_YEARS))
        return s

    def default_shape(self, batch_size: int = 1) -> torch.Tensor:
        """All phenotypes 0.5 except ``age`` = 30 years (an average androgynous adult)."""
        return self._default_shape_f64(batch_size).to(device=self.device, dtype=self.dtype)

    def shape_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        kw = {"device": self.device, "dtype": self.dtype}
        n = len(ANNY_SHAPE_NAMES)
        return torch.zeros(n, **kw), torch.ones(n, **kw)

    def shape_from(self, batch_size: int = 1, age_years: float | None = None, **phenotypes: float) -> torch.Tensor:
        """Build a shape tensor by name, e.g. ``shape_from(height=0.8, gender=1.0, age_years=40)``;
        unnamed phenotypes take :meth:`default_shape`'s values."""
        s = self._default_shape_f64(batch_size)
        unknown = set(phenotypes) - set(ANNY_SHAPE_NAMES)
        if unknown:
            raise BodyModelError(
                f"anny: unknown phenotype(s) {sorted(unknown)}; use {', '.join(ANNY_SHAPE_NAMES)} (and age_years)."
            )
        for name, value in phenotypes.items():
            s[:, ANNY_SHAPE_NAMES.index(name)] = float(value)
        if age_years is not None:
            s[:, ANNY_SHAPE_NAMES.index("age")] = float(age_from_years(age_years))
        return s.to(device=self.device, dtype=self.dtype)

    @property
    def pose_bone_map(self) -> dict[str, tuple[str, ...]]:
        """Fitter joint -> the Anny bones it drives (:data:`ANNY_POSE_BONES`)."""
        return dict(ANNY_POSE_BONES)

    # -- forward ------------------------------------------------------------------------
    def _run(self, src: torch.Tensor, shape: torch.Tensor) -> dict[str, torch.Tensor]:
        """src: (B, 52, 3) axis-angles in RefSD axes (root, 21 body joints, 2 x 15 finger joints)."""
        import roma

        c = self._to_refsd.to(src.dtype)
        batch = src.shape[0]
        # A rotation R in RefSD axes is C^T R C in Anny's: axis_anny = C^T axis_refsd.
        aa = (src @ c)[:, self._src_idx] * self._fraction.to(src.dtype)[None, :, None]
        rot = roma.rotvec_to_rotmat(aa)
        # Out-of-place assembly (keeps torch.func transforms usable).
        eye3 = torch.eye(3, dtype=src.dtype, device=src.device)
        rots = eye3.expand(batch, self.num_bones, 3, 3).index_copy(1, self._bone_idx, rot)
        zeros = src.new_zeros(batch, self.num_bones, 3, 1)
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=src.dtype, device=src.device)
        deltas = torch.cat([torch.cat([rots, zeros], dim=-1), bottom.expand(batch, self.num_bones, 1, 4)], dim=-2)
        out = self.anny(pose_parameters=deltas, phenotype_kwargs=shape)
        verts = out["vertices"] @ c.T
        heads = out["bone_poses"][..., :3, 3] @ c.T
        return {"vertices": verts, "heads": heads}

    def forward(
        self,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        shape: torch.Tensor,
        transl: torch.Tensor,
        hand_pose: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
    ) -> BodyOutput:
        batch = self._check_inputs(global_orient, body_pose, shape, transl, hand_pose, expression)
        if hand_pose is None:
            hand_pose = global_orient.new_zeros(batch, 2, len(HAND_JOINT_NAMES), 3)
        src = torch.cat([global_orient[:, None], body_pose, hand_pose.reshape(batch, -1, 3)], dim=1)
        out = self._run(src, shape)
        offset = transl[:, None, :]
        verts = out["vertices"] + offset
        heads = out["heads"] + offset

        # Keypoints regressed from the untranslated vertices, then translated: the weights of a
        # keypoint sum to 1 only up to float32 rounding (~1e-7 x the number of vertices it uses),
        # so regressing translated vertices would move the point by (sum - 1) x transl as well.
        kp = torch.einsum("kv,bvd->bkd", self._kp_weights.to(verts.dtype), out["vertices"]) + offset
        named = dict(zip(self._kp_keys, kp.unbind(1), strict=True))
        neck = 0.5 * (named["left_shoulder"] + named["right_shoulder"])
        coco18 = torch.stack([named[k] if k is not None else neck for k in _COCO18_KEYS], dim=1)
        mid_hip = 0.5 * (named["left_hip"] + named["right_hip"])
        body25 = torch.cat(
            [coco18[:, :8], mid_hip[:, None], coco18[:, 8:], torch.stack([named[k] for k in _FOOT6_KEYS], 1)], 1
        )

        hh = self._hand_heads
        hands = heads[:, hh.clamp(min=0)]  # (B, 2, 21, 3)
        tips = verts[:, self._tip_vertices].reshape(batch, 2, 5, 3)
        tip_slots = torch.tensor([4, 8, 12, 16, 20], device=verts.device)
        hands = hands.index_copy(2, tip_slots, tips)

        pj = self._pose_joint_heads
        valid = (pj >= 0).to(verts.dtype)
        rest_heads = out["heads"][:, pj.clamp(min=0)] * valid[None, :, :, None]
        pose_joints = rest_heads.sum(2) / valid.sum(1)[None, :, None] + offset  # translated last, as kp

        device = verts.device
        kp_valid = {
            "coco18": torch.ones(18, dtype=torch.bool, device=device),
            "body25": torch.ones(25, dtype=torch.bool, device=device),
            "hands": torch.ones(2, 21, dtype=torch.bool, device=device),
        }
        return BodyOutput(
            vertices=verts,
            joints=heads,
            pose_joints=pose_joints,
            coco18=coco18,
            body25=body25,
            hands=hands,
            face=None,
            kp_valid=kp_valid,
        )
