"""Baseline translation generators (pix2pix, ResViT-like, diffusion, Reg-GAN), registered in
:mod:`robustmri.models.registry`.

May import the models' interface and registry, perturbations, data and the bottom layers; never
KD+attack, training, the bench or the report (docs/architecture.md).
"""
