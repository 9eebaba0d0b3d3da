"""Shared helpers for the node wrappers: custom types and error reporting."""

from comfy_api.latest import io

POSE_KEYPOINT = io.Custom("POSE_KEYPOINT")

CATEGORY = "RefSD"
