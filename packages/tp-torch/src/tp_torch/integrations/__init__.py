"""Bridges to the libraries users build models with: e3nn modules (:mod:`.e3nn`), MACE models
(:mod:`.mace`) and NequIP models (:mod:`.nequip`). Each imports its library only when used:
``import tp_torch`` never does."""
