"""Moved to :mod:`fastadasp.run.preflight`; this name keeps working with a DeprecationWarning."""

from fastadasp._moved import moved

moved(__name__, "fastadasp.run.preflight")
