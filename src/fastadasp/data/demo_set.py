"""Moved to :mod:`fastadasp.data.synthetic.demo_sets`; this name keeps working with a DeprecationWarning."""

from fastadasp._moved import moved

moved(__name__, "fastadasp.data.synthetic.demo_sets")
