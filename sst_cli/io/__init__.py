"""Images, videos and files: the only place sst reads or writes an image or a video, and the one atomic write.

- ``images``: the API: decode (``read_image``, ``probe``), encode (``write_image``, ``encode``), pixel
  conversions, what each output format can hold;
- ``opencv``: cv2, the codec for decoding PNG (8/16-bit), JPEG, TIFF (8/16-bit), WebP, BMP and PNM, and for
  encoding every output format; the only module that imports cv2 or handles BGR order;
- ``files``: atomic writes, stale temporaries, finding image and video files in folders;
- ``video``: PyAV (the optional extra ``[video]``), the only module that demuxes, decodes, encodes or muxes a
  video.

What stays on Pillow or hand-written, each because cv2 cannot do it:
- ``pillow``: header reads without decoding pixels (``probe``; EXIF orientation, ICC profile, DPI of every
  read: cv2 has no header-only read and returns no ICC profile for TIFF); decoding GIF, TGA and other
  formats cv2 has no decoder for, TIFF with 8-bit alpha (cv2 premultiplies it), grey + alpha (cv2 drops
  the alpha), palette, CMYK or float samples; any file cv2 refuses (Pillow decodes it or gives the
  reason); writing 8-bit grey + alpha TIFF (cv2 writes 1, 3 or 4 channels only);
- ``png``: the streaming ``PngWriter`` (cv2 encodes whole arrays; outputs larger than memory are written
  row by row) and grey + alpha PNG (cv2 cannot write colour type 4);
- ``containers``: what cv2's encoders have no parameter for, added to their bytes: the ICC profile and
  declared alpha (ExtraSamples) of TIFF, DPI of PNG, JPEG and BMP.

Imports only ``sst_cli.errors``.
"""
