"""The generative models of notes §5-10, one module per model family, each named after its section.

Every image model of this package follows one of two small interfaces (``generative.models.base``), so
that one training task, one likelihood table and one ``sample`` command serve them all:

* :class:`~generative.models.base.ImageDensity` — exact likelihood (FVSBN, NADE, MADE, PixelCNN, ...):
  ``log_prob(x) -> [B]`` nats, ``loss(x, generator) -> [B]``, ``sample(n, generator)``;
* :class:`~generative.models.base.LatentDensity` — a latent-variable model with a bound (the VAE):
  ``elbo(x, generator)``, ``iwae(x, k, generator)``, ``loss``, ``sample``.
"""
