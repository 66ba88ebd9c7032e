"""Moved to :mod:`fastadasp.testing.tiny_models`; this name keeps working with a DeprecationWarning."""

from fastadasp._moved import moved

moved(__name__, "fastadasp.testing.tiny_models")
