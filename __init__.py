"""RefSD ComfyUI node pack (V3 API entry point).

Importing this module is cheap: node modules only declare schemas; models, body
meshes and caches are built the first time a node runs.
"""

import importlib.util

# Outside ComfyUI (e.g. pytest collecting this folder as a package) there is nothing to
# register; the library itself lives in ``refsd/`` and never needs ComfyUI.
if importlib.util.find_spec("comfy_api") is not None:
    from comfy_api.latest import ComfyExtension, io

    from .nodes import NODE_CLASSES

    class RefSDExtension(ComfyExtension):
        async def get_node_list(self) -> list[type[io.ComfyNode]]:
            return list(NODE_CLASSES)

    async def comfy_entrypoint() -> ComfyExtension:
        return RefSDExtension()
