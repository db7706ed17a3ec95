"""ComfyUI custom node: SST and ESC-RIB upscale models (sst-cli) in ComfyUI.

Install: copy this folder to ``ComfyUI/custom_nodes/sst`` and ``pip install 'sst-cli[spandrel]'`` into
ComfyUI's Python, then restart ComfyUI. Importing the node registers sst's networks in spandrel
(``sst_cli.spandrel.install()``), so ComfyUI's own "Load Upscale Model" node loads every SST file whose
tensors tell the network (sst-tiny, sst-xl+, esc-rib, sst's own .safetensors). The base variants and their
"+" twins (sst-light/sst-light+, sst/sst+, sst-l/sst-l+) have the same tensors: "Load SST Upscale Model"
tells them apart by the official file name, or by the variant chosen for a renamed file.

Nothing is imported from ComfyUI until ComfyUI asks the node for its inputs or runs it.
"""

from __future__ import annotations

from typing import Any

import sst_cli.spandrel
from sst_cli.model.registry import VARIANTS

sst_cli.spandrel.install()


class SSTUpscaleModelLoader:
    """An UPSCALE_MODEL (a spandrel ImageModelDescriptor) from a file in ComfyUI's upscale_models folder,
    the network decided as ``sst upscale --weights FILE [--model VARIANT]`` decides it."""

    RETURN_TYPES = ("UPSCALE_MODEL",)
    FUNCTION = "load_model"
    CATEGORY = "loaders"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        import folder_paths  # ComfyUI's

        return {"required": {"model_name": (folder_paths.get_filename_list("upscale_models"),),
                             "variant": (["auto", *VARIANTS],)}}

    def load_model(self, model_name: str, variant: str = "auto") -> tuple[Any]:
        import folder_paths

        path = folder_paths.get_full_path_or_raise("upscale_models", model_name)
        return (sst_cli.spandrel.load(path, None if variant == "auto" else variant).eval(),)


NODE_CLASS_MAPPINGS = {"SSTUpscaleModelLoader": SSTUpscaleModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"SSTUpscaleModelLoader": "Load SST Upscale Model"}
