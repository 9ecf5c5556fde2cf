"""Step 6, show.

Tables, plain paths and JSON for pipes (`text`), summaries, the HTML gallery and terminal
previews.
"""
