"""Parametric human bodies, notes chapter 13: 2D pose, SMPL-format body models and learned gradient descent.

Modules, one per topic of the notes:

* ``skeleton``: the 24-joint kinematic tree of SMPL and the 14-keypoint tree of the 2D methods.
* ``lbs`` (§13.2): Rodrigues, blend shapes, the kinematic chain and linear blend skinning as pure functions;
  ``model``: :class:`~bodies.model.BodyModel`, the SMPL function as a module; ``model_files``: SMPL ``.npz``
  and ``.pkl`` files read without running code; ``skinning``: dual-quaternion skinning, the reference
  deformer the shipped model's pose blend shapes are learned from; ``procedural``: that shipped model's builder.
* ``prior``: joint limits, the pose sampler and the fitting priors; ``data``: rendered data sets.
* ``pictorial`` (§13.1): pictorial structures and the mixture of parts; ``cpm``: convolutional pose machines;
  ``deeppose``: DeepPose's regression cascade; ``heatmaps``: their targets, decoding and augmentation;
  ``appearance2d``: the learned part filters and springs of pictorial structures; ``metrics``: PCK, PCKh, MPJPE,
  PA-MPJPE.
* ``fitting`` (§13.3): the reprojection loss and the optimisation baseline; ``lgd``: learned gradient descent.
* ``commands``, ``demo``: ``python -m bodies render | train | fit | demo``.
"""
