"""Generative models and the neural-network foundation of the course (notes §1-10).

``generative.training`` is the one optimisation engine of every torch package (``vision3d`` and
``bodies`` fit on it too); ``generative.nn`` holds the building blocks of notes §1-4 (perceptron,
MLP, losses, hand-written backpropagation, convolution, U-Net, RNN, LSTM); ``generative.data`` the
data sets that ship or are generated (never downloaded); ``generative.tasks`` the training
objectives that the command line runs.
"""
