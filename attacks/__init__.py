"""ART-based attack evaluation (FGSM, PGD, CW-L2; oblivious, BPDA and BPDA+EOT threat models).

Empty until the attack-evaluation issue lands; the defense it will attack is
``defense_hgan.art_defense``.
"""
