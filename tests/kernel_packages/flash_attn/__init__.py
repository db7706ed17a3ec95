"""Test stand-in for flash-attn 2 (see tests/kernels.py)."""

from kernels import fa2_flash_attn_func as flash_attn_func

__all__ = ["flash_attn_func"]
