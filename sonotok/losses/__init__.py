"""Training losses: spectral reconstruction, adversarial + feature matching, semantic, SI-SNR/PIT.

Every loss returns ``dict[str, Tensor]`` with namespaced keys (``rec/mel``, ``adv/gen``, ...).
"""
