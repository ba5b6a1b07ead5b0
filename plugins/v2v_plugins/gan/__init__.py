"""Shared parts of the GAN video models (vid2vid, perframe, predict): a library, no hooks.

- :mod:`.conditioning`: dataset modalities → the generator's input channels (one-hot labels, instance boundaries);
- :mod:`.blocks`: reflect-padded convolutions, residual blocks, down/up stages, N(0, 0.02) initialisation;
- :mod:`.discriminators`: the multi-scale PatchGAN, vid2vid's temporal and face Ds;
- :mod:`.losses`: GAN, feature matching, VGG, flow, warp, temporal and mask terms, put together by ``Vid2VidLoss``;
- :mod:`.perceptual`: the VGG19 perceptual loss;
- :mod:`.efficiency`: channels_last, autocast and a float32 InstanceNorm.

The modules import torch at their top; plugin entry modules import them lazily so ``v2v --help`` stays light.
"""
