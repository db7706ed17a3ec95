"""The network and everything about weights.

- ``archs``: one folder per network (SST, ESC-RIB, SSTReal): modules with the official names (published state dicts
  load strictly), the config dataclass that is the only home of its keywords, state-dict detection and
  cost model; ``archs.build_model`` dispatches an official ``network_g`` on its ``type``;
- ``attention``: attention backends behind one signature (the networks never import a kernel);
- ``registry``: every variant as plain data (no torch), ``sst-tiny`` included;
- ``weights``: reading and writing weights files (BasicSR .pth, safetensors, our metadata);
- ``identify``: which network a file holds (stored config, official file name, --model, tensors);
- ``loading``: building that network and loading the weights strictly (upsampler re-sampling);
- ``hub``: where weights come from: search folders, the Hugging Face Hub, URLs; download, verify, cache;
- ``bicubic``: MATLAB-style bicubic resize, and the bicubic baseline as a model;
- ``placement``: where the tiles of a forward lie in the whole image (the tiler says; SSTReal's noise reads it).

Imports only ``sst_cli.errors``, ``sst_cli.runtime`` and ``sst_cli.io``. Import from the submodules; this
package imports nothing at import time, so ``registry`` stays usable without torch.
"""
