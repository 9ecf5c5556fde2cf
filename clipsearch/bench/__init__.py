"""Measurements of this machine.

`bench index` (speed against the model alone, draft fidelity, memory) and `bench query` (search
speed, recall, cold and warm CLI queries).
"""
