"""Prompt sets: the embedded benign anchors and safe/unsafe pairs, and readers for CSV / JSONL / Hub datasets."""
