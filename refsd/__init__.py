"""RefSD: privacy-compliant people replacement (library).

The library is importable without ComfyUI. Sub-modules are imported lazily by
their users, so ``import refsd`` stays cheap (no torch model construction, no
file scanning, no network).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
