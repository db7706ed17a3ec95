"""The network and everything about weights.

- ``network``: the SST network (official module names, so published state dicts load strictly);
- ``attention``: attention backends behind one signature (the network never imports a kernel);
- ``registry``: every variant as plain data (no torch), ``sst-tiny`` included;
- ``weights``: reading, identifying (which network a file holds), saving and converting weights;
- ``hub``: where weights come from: search folders, the Hugging Face Hub, URLs; download, verify, cache;
- ``bicubic``: MATLAB-style bicubic resize, and the bicubic baseline as a model.

Imports only ``sst_cli.errors``, ``sst_cli.runtime`` and ``sst_cli.io``. Import from the submodules; this
package imports nothing at import time, so ``registry`` stays usable without torch.
"""
