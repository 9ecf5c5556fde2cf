"""Step 4, store.

The library folder (`layout`), SQLite as the source of truth (`db`), the FAISS index and its
file (`vectorindex`, `vectorfile`), the write lock and `repair`.
"""
