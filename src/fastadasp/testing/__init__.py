"""Builders for tests and offline plumbing: tiny random models and miniature corpora.

Nothing here is needed to reduce tokens; the outputs of the tiny models are noise and are
never reported as results."""
