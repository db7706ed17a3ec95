"""Test stand-in for FlashAttention 3, flash_attn_interface (see tests/kernels.py); older releases'
(out, lse) return when SST_TEST_FA3_RETURNS_LSE=1."""

import os

from kernels import fa3_flash_attn_func, fa3_flash_attn_func_with_lse

flash_attn_func = fa3_flash_attn_func_with_lse if os.environ.get("SST_TEST_FA3_RETURNS_LSE") == "1" else fa3_flash_attn_func

__all__ = ["flash_attn_func"]
