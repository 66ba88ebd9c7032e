"""Moved to :mod:`fastadasp.run.benchmarking`; this name keeps working with a DeprecationWarning."""

from fastadasp._moved import moved

moved(__name__, "fastadasp.run.benchmarking")
