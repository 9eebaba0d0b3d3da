"""SMPL-X model files: where they are, and loading them safely.

Model files: ``SMPLX_NEUTRAL.npz`` / ``SMPLX_MALE.npz`` / ``SMPLX_FEMALE.npz`` from
https://smpl-x.is.tue.mpg.de (registration and the SMPL-X licence required; RefSD never
ships or downloads them), in the folder passed as ``model_dir`` (the ComfyUI node passes
``models/smplx/``), else ``$SMPLX_MODEL_DIR``, else ``~/.cache/refsd/smplx``.

Only ``.npz`` files are read, with ``numpy.load(allow_pickle=False)``: smplx's own loader
lets numpy unpickle object arrays (and unpickles ``.pkl`` files), so RefSD loads the arrays itself
and runs the model with smplx's tensor functions (``smplx.lbs``, see
:mod:`refsd.body.smplx_backend`). Keys the model does not need (e.g. ``joint2num`` /
``part2num``, stored as pickled objects in some official files) are never read, so they are
never unpickled; a needed key stored as a pickled object array is refused. Missing, ``.pkl``,
corrupt or malformed files raise BodyModelError naming the expected path, the file names and
the download site.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .base import BodyModelError

__all__ = [
    "SMPLX_DOWNLOAD_URL",
    "SMPLX_FILE_NAMES",
    "SMPLX_NUM_VERTICES",
    "NUM_JOINTS",
    "NUM_BODY_JOINTS",
    "NUM_HAND_JOINTS",
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
