"""`clipsearch eval`: how well the library's model finds your own captioned photos."""
