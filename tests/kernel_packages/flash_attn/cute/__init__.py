"""Test stand-in for FlashAttention 4, flash_attn.cute (see tests/kernels.py)."""

from kernels import fa4_flash_attn_func as flash_attn_func

__all__ = ["flash_attn_func"]
