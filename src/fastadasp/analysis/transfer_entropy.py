"""Moved to :mod:`fastadasp.run.transfer_entropy`; this name keeps working with a DeprecationWarning."""

from fastadasp._moved import moved

moved(__name__, "fastadasp.run.transfer_entropy")
