"""Step 2, decode.

Which files are photos, and turning one into an upright RGB image fast (JPEG draft decoding,
EXIF orientation, HEIC and RAW); thumbnails.
"""
