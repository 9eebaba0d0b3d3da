"""Fitting 3D bodies to 2D keypoints: :class:`BodyFitter` -> :class:`BodyFit`."""

from .fitter import DEFAULT_FOV_DEG, BodyFitter, FitOptions
from .result import BodyFit, FitError, PersonFit
from .video import VideoFitOptions, VideoFitState, fit_video

__all__ = ["BodyFitter", "FitOptions", "BodyFit", "PersonFit", "FitError", "DEFAULT_FOV_DEG", "VideoFitOptions",
           "VideoFitState", "fit_video"]
