"""Generative models: the DCGAN generator and discriminator, and the GAN model that trains them with `fit`."""

from kapps.models.generative import dcgan, gan
from kapps.models.generative.dcgan import dcgan_discriminator, dcgan_generator, scale_steps
from kapps.models.generative.gan import GAN

__all__ = ["GAN", "dcgan", "dcgan_discriminator", "dcgan_generator", "gan", "scale_steps"]
