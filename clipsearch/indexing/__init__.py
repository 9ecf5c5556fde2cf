"""Steps 1 and 3, scan and plan, then embed.

Walk the roots, decide per file (unchanged, moved, removed, to embed), decode in worker
processes while the model embeds, commit in steps.
"""
