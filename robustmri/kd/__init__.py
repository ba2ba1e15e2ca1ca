"""KD+attack: the robust translation model (attacker + generator + registration teacher -> student)."""
