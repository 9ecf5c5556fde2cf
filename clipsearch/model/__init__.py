"""Step 3, embed.

Which model a library uses (`spec`), the one contract encoders meet (`base`), the one factory
that picks an encoder per task (`factory`), the torch model (`openclip`) and the torch-free
towers queries use (`textnp`, `imageort`) with their export format.
"""
