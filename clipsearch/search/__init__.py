"""Step 5, search.

Reading query terms and adding concepts up (`terms`), near-duplicate groups (`dupes`).
"""
