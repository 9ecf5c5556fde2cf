"""`clipsearch serve`: a local web app over a library (search, refine, browse, duplicates).

Nothing here is imported by the other commands: Starlette and uvicorn come with the optional
`clipsearch[serve]` extra and are imported only by `serve` and `bench serve`.
"""
