"""SMPL-X body model backend (optional; the user supplies the model files).

Model files: ``SMPLX_NEUTRAL.npz`` / ``SMPLX_MALE.npz`` / ``SMPLX_FEMALE.npz`` from
https://smpl-x.is.tue.mpg.de (registration and the SMPL-X licence required; RefSD never
ships or downloads them), in the folder passed as ``model_dir`` (the ComfyUI node passes
``models/smplx/``), else ``$SMPLX_MODEL_DIR``, else ``~/.cache/refsd/smplx``.

Only ``.npz`` files are read, with ``numpy.load(allow_pickle=False)``: smplx's own loader
lets numpy unpickle object arrays (and unpickles ``.pkl`` files), so RefSD loads the arrays itself
and runs the model with smplx's tensor functions (``smplx.lbs``). Keys the model does not
need (e.g. ``joint2num`` / ``part2num``, stored as pickled objects in some official files)
are never read, so they are never unpickled; a needed key stored as a pickled object array
is refused.

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
import zipfile
from pathlib import Path

import numpy as np
import torch

from .base import BODY25_TO_COCO18, PART_INDEX, BodyModel, BodyModelError, BodyOutput, split_head_labels

__all__ = [
    "SMPLXBody",
    "SMPLX_DOWNLOAD_URL",
    "SMPLX_FILE_NAMES",
    "SMPLX_TO_BODY25",
    "SMPLX_TO_HAND21",
    "SMPLX_JOINT_PARTS",
    "resolve_smplx_model_dir",
    "smplx_model_path",
    "load_smplx_npz",
]

SMPLX_DOWNLOAD_URL = "https://smpl-x.is.tue.mpg.de"
SMPLX_FILE_NAMES: dict[str, str] = {
    "neutral": "SMPLX_NEUTRAL.npz",
    "male": "SMPLX_MALE.npz",
    "female": "SMPLX_FEMALE.npz",
}
NUM_JOINTS = 55
SMPLX_NUM_VERTICES = 10475
NUM_BODY_JOINTS = 21
NUM_HAND_JOINTS = 15
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

#: (key, dtype kind, shape with None = any, V = vertex count). Needed by the model.
_REQUIRED = {
    "v_template": "f",
    "f": "iu",
    "shapedirs": "f",
    "posedirs": "f",
    "J_regressor": "f",
    "weights": "f",
    "kintree_table": "iuf",
    "hands_componentsl": "f",
    "hands_componentsr": "f",
    "hands_meanl": "f",
    "hands_meanr": "f",
    "lmk_faces_idx": "iuf",
    "lmk_bary_coords": "f",
}
_OPTIONAL = {"dynamic_lmk_faces_idx": "iuf", "dynamic_lmk_bary_coords": "f"}


def resolve_smplx_model_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """``model_dir`` if given, else ``$SMPLX_MODEL_DIR``, else ``~/.cache/refsd/smplx``."""
    if model_dir is not None and str(model_dir) != "":
        return Path(model_dir).expanduser()
    env = os.environ.get("SMPLX_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "refsd" / "smplx"


def _where_to_get(folder: Path) -> str:
    names = ", ".join(SMPLX_FILE_NAMES.values())
    return (
        f"Download the SMPL-X model (npz version: {names}) from {SMPLX_DOWNLOAD_URL} "
        f"(free registration, SMPL-X licence) and put the .npz files in {folder} "
        "(ComfyUI: models/smplx/; library: set SMPLX_MODEL_DIR or pass model_dir)."
    )


def smplx_model_path(model_dir: str | os.PathLike | None = None, gender: str = "neutral") -> Path:
    """The ``.npz`` file for ``gender``; raises BodyModelError naming the expected path,
    the file names and the download site when it is missing or only a ``.pkl`` exists."""
    g = str(gender).lower()
    if g not in SMPLX_FILE_NAMES:
        raise BodyModelError(f"smplx: unknown gender {gender!r}; use one of {', '.join(SMPLX_FILE_NAMES)}.")
    base = resolve_smplx_model_dir(model_dir)
    if base.suffix.lower() == ".pkl":
        raise BodyModelError(
            f"smplx: {base} is a .pkl file; RefSD only loads SMPL-X .npz files (pickle files can run "
            f"arbitrary code). {_where_to_get(base.parent)}"
        )
    if base.suffix.lower() == ".npz":
        if not base.is_file():
            raise BodyModelError(f"smplx: model file {base} does not exist. {_where_to_get(base.parent)}")
        return base
    if not base.is_dir():
        raise BodyModelError(
            f"smplx: model folder {base} does not exist (expected {base / SMPLX_FILE_NAMES[g]}). {_where_to_get(base)}"
        )
    path = base / SMPLX_FILE_NAMES[g]
    if path.is_file():
        return path
    pkl = path.with_suffix(".pkl")
    if pkl.exists():
        raise BodyModelError(
            f"smplx: found {pkl} but RefSD only loads .npz files (pickle files can run arbitrary code); "
            f"expected {path}. {_where_to_get(base)}"
        )
    present = sorted(p.name for p in base.glob("*.npz"))
    hint = f" The folder has: {', '.join(present)}." if present else ""
    raise BodyModelError(f"smplx: model file {path} not found.{hint} {_where_to_get(base)}")


def load_smplx_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load the arrays an SMPL-X model needs from an ``.npz``, never unpickling anything.

    Raises BodyModelError for a corrupt file, a missing key, a pickled (object) array in a
    needed key or a wrong shape.
    """
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    redo = f"Re-download {SMPLX_FILE_NAMES['neutral']}-style .npz files from {SMPLX_DOWNLOAD_URL}."
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            for key, kinds in {**_REQUIRED, **_OPTIONAL}.items():
                if key not in keys:
                    if key in _REQUIRED:
                        raise BodyModelError(
                            f"smplx: {path} has no array {key!r}, so it is not an SMPL-X model file "
                            f"(it has: {', '.join(sorted(keys)) or 'nothing'}). {redo}"
                        )
                    continue
                try:
                    arr = npz[key]
                except ValueError as e:
                    if "pickle" in str(e).lower() or "object" in str(e).lower():
                        raise BodyModelError(
                            f"smplx: {path}: array {key!r} is a pickled object array; RefSD never loads pickled "
                            f"data (it can run arbitrary code). {redo}"
                        ) from e
                    raise
                if arr.dtype.kind not in kinds:
                    raise BodyModelError(
                        f"smplx: {path}: array {key!r} has dtype {arr.dtype}, expected a numeric array. {redo}"
                    )
                out[key] = arr
    except BodyModelError:
        raise
    except FileNotFoundError as e:
        raise BodyModelError(f"smplx: model file {path} not found. {_where_to_get(path.parent)}") from e
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        raise BodyModelError(
            f"smplx: {path} is not a readable .npz file ({type(e).__name__}: {e}); it may be truncated or "
            f"corrupt. {redo}"
        ) from e
    _check_shapes(path, out)
    return out


def _check_shapes(path: Path, a: dict[str, np.ndarray]) -> None:
    def bad(key: str, want: str) -> BodyModelError:
        return BodyModelError(
            f"smplx: {path}: array {key!r} has shape {a[key].shape}, expected {want}; this is not an SMPL-X "
            f"model file. Download the SMPL-X .npz from {SMPLX_DOWNLOAD_URL}."
        )

    v = a["v_template"]
    if v.ndim != 2 or v.shape[1] != 3:
        raise bad("v_template", "(V, 3)")
    nv = v.shape[0]
    from smplx.vertex_ids import vertex_ids

    if nv < SMPLX_NUM_VERTICES or nv <= max(vertex_ids["smplx"].values()):
        raise bad("v_template", f"({SMPLX_NUM_VERTICES}, 3) -- SMPL-X has {SMPLX_NUM_VERTICES} vertices")
    checks = {
        "f": (a["f"].ndim == 2 and a["f"].shape[1] == 3, "(F, 3)"),
        "shapedirs": (a["shapedirs"].ndim == 3 and a["shapedirs"].shape[:2] == (nv, 3), f"({nv}, 3, S)"),
        "posedirs": (a["posedirs"].shape == (nv, 3, (NUM_JOINTS - 1) * 9), f"({nv}, 3, {(NUM_JOINTS - 1) * 9})"),
        "J_regressor": (a["J_regressor"].shape == (NUM_JOINTS, nv), f"({NUM_JOINTS}, {nv})"),
        "weights": (a["weights"].shape == (nv, NUM_JOINTS), f"({nv}, {NUM_JOINTS})"),
        "kintree_table": (a["kintree_table"].shape == (2, NUM_JOINTS), f"(2, {NUM_JOINTS})"),
        "hands_componentsl": (
            a["hands_componentsl"].ndim == 2 and a["hands_componentsl"].shape[1] == 3 * NUM_HAND_JOINTS,
            "(n, 45)",
        ),
        "hands_componentsr": (
            a["hands_componentsr"].ndim == 2 and a["hands_componentsr"].shape[1] == 3 * NUM_HAND_JOINTS,
            "(n, 45)",
        ),
        "hands_meanl": (a["hands_meanl"].reshape(-1).shape == (3 * NUM_HAND_JOINTS,), "(45,)"),
        "hands_meanr": (a["hands_meanr"].reshape(-1).shape == (3 * NUM_HAND_JOINTS,), "(45,)"),
        "lmk_faces_idx": (a["lmk_faces_idx"].ndim == 1, "(L,)"),
        "lmk_bary_coords": (
            a["lmk_bary_coords"].shape == (a["lmk_faces_idx"].shape[0], 3),
            f"({a['lmk_faces_idx'].shape[0]}, 3)",
        ),
    }
    if "dynamic_lmk_faces_idx" in a and "dynamic_lmk_bary_coords" in a:
        d = a["dynamic_lmk_faces_idx"]
        checks["dynamic_lmk_faces_idx"] = (d.ndim == 2 and d.shape[0] == 79, "(79, 17)")
        checks["dynamic_lmk_bary_coords"] = (a["dynamic_lmk_bary_coords"].shape == (*d.shape, 3), f"({d.shape}, 3)")
    for key, (ok, want) in checks.items():
        if not ok:
            raise bad(key, want)
    nf = a["f"].shape[0]
    if a["f"].min() < 0 or a["f"].max() >= nv:
        raise bad("f", f"vertex indices in [0, {nv})")
    if a["lmk_faces_idx"].min() < 0 or a["lmk_faces_idx"].max() >= nf:
        raise bad("lmk_faces_idx", f"face indices in [0, {nf})")


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
