"""milr: maximal initial learning rates in deep ReLU networks (Iyer, Hanin, Rolnick, ICML 2023)."""

# The version of the engine's numerical behaviour, part of every sweep cell's hash (see sweep.py).
# Bump it by hand with any change that alters results (training, search, sharpness, data), so that
# stores never mix records computed by different engines; refactors that change no number keep it.
ENGINE_VERSION = "3"
