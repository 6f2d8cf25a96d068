"""The search side: candidates from the index's lists, fused, re-ranked by alignment (search/engine.py)."""
