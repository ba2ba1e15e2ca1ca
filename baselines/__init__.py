"""Baseline translation generators (pix2pix, ResViT-like, diffusion, Reg-GAN), registered in
:mod:`robustmri.models.registry`."""
