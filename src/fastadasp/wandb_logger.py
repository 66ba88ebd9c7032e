"""Moved to :mod:`fastadasp.run.wandb_logger`; this name keeps working with a DeprecationWarning."""

from fastadasp._moved import moved

moved(__name__, "fastadasp.run.wandb_logger")
