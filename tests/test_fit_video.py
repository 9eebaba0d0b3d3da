"""Video fitting (refsd.fit.video) on synthetic sequences with known 3D (refsd.testing.sequences):
tracked people fitted coherently against fitting every frame alone -- the acceleration error at
least 3x lower with PA-MPJPE no worse (the issue's target) -- one shape per track, chunks
continued by the state, and one look and one diffusion seed per track."""

from __future__ import annotations

import pytest

from refsd.fit import BodyFitter, VideoFitOptions, VideoFitState, fit_video
from refsd.keypoints.track import count_id_switches, track_frames
from refsd.testing.sequences import accel_error, fitted_joints, make_sequence, sequence_pa_mpjpe

pytestmark = pytest.mark.slow  # documentation only: runs in CI


@pytest.fixture(scope="module")
def fitter(anny_model):
    return BodyFitter(anny_model)


def _tracked(seq):
    ids = track_frames(seq.frames)
    assert count_id_switches(seq.truth_ids, ids) == 0
    for frame, row in zip(seq.frames, ids, strict=True):
        for p, tid in zip(frame.people, row, strict=True):
            p.track_id = tid
    return seq


@pytest.mark.parametrize("kind", ["walking", "crossing"])
def test_video_fit_is_smooth_and_no_less_accurate(anny_model, fitter, kind):
    seq = make_sequence(anny_model, kind, frames=20 if kind == "walking" else 14, seed=1)
    per_frame = [fitter.fit_frame(f, camera=seq.camera) for f in seq.frames]
    video = fit_video(fitter, _tracked(seq).frames, camera=seq.camera)
    shape = next(iter(seq.joints.values())).shape
    P = fitted_joints(anny_model, per_frame, seq.truth_ids, shape)
    V = fitted_joints(anny_model, video, seq.truth_ids, shape)
    for k, gt in seq.joints.items():
        acc_p, acc_v = accel_error(P[k], gt), accel_error(V[k], gt)
        pa_p, pa_v = sequence_pa_mpjpe(P[k], gt), sequence_pa_mpjpe(V[k], gt)
        # measured on 40-frame sequences: accel 75-120 -> 4-5 mm/frame^2, PA-MPJPE 28-36 -> 17-23 mm
        assert acc_v * 3 <= acc_p, (kind, k, acc_p, acc_v)
        assert pa_v <= pa_p, (kind, k, pa_p, pa_v)
    # one shape per track, every frame's people keep their keypoint index and track
    for tid in {p.track_id for f in video for p in f.people}:
        shapes = {tuple(p.shape) for f in video for p in f.people if p.track_id == tid}
        assert len(shapes) == 1
    assert all(sorted(p.keypoint_index for p in f.people) == list(range(len(fr.people)))
               for f, fr in zip(video, seq.frames, strict=True))


def test_chunks_continue_the_warm_start_and_the_shape(anny_model, fitter):
    seq = _tracked(make_sequence(anny_model, "occlusion", frames=30, seed=2))
    state = VideoFitState()
    first = fit_video(fitter, seq.frames[:15], camera=seq.camera, state=state)
    (tid,) = state.last
    second = fit_video(fitter, seq.frames[15:], camera=seq.camera, state=state)
    shapes = {tuple(p.shape) for f in first + second for p in f.people}
    assert len(shapes) == 1 and list(shapes)[0] == tuple(state.shapes[tid])
    assert all(p.track_id == tid and p.quality == "good" for f in second for p in f.people)
    # the walker is missing for six frames (occlusion): those frames have nobody, the others one person
    assert [len(f.people) for f in first + second].count(0) == 6
    with pytest.raises(Exception, match="temporal_weight"):
        VideoFitOptions(temporal_weight=0)


def test_one_look_and_one_seed_per_track(anny_model, fitter):
    from refsd.people import AttributeDistribution
    from refsd.pipeline import person_seed
    from refsd.render.avatar import AttributeSource

    seq = _tracked(make_sequence(anny_model, "crossing", frames=6, seed=3))
    fits = fit_video(fitter, seq.frames, camera=seq.camera, options=VideoFitOptions(smooth_sigma=0))
    looks = AttributeSource(distribution=AttributeDistribution(), seed=11).resolve(fits)
    by_track: dict[int, set] = {}
    for fit, people in zip(fits, looks, strict=True):
        for p, a in zip(fit.people, people, strict=True):
            by_track.setdefault(p.track_id, set()).add(tuple(sorted(a.to_dict().items(), key=str)))
    assert len(by_track) == 2 and all(len(v) == 1 for v in by_track.values())  # the same person in every frame
    assert by_track[0] != by_track[1]
    assert person_seed(11, 0, track_id=5) == person_seed(11, 3, track_id=5) != person_seed(11, 0)
