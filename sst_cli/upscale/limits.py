"""Limits on what ``sst upscale`` accepts, as plain data (no torch), so the CLI can show them in --help."""

# Input images with more pixels are refused from their header, before decoding, unless --max-pixels says
# otherwise: a 100 MP photo passes, a 30000x30000 decompression bomb (900 MP from an 875 KB PNG) does not.
DEFAULT_MAX_PIXELS = 1 << 27
