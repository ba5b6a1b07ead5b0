"""Weight files the evaluation metrics of issue 12 use, registered through ``v2v_register_weights``.

* ``i3d_kinetics400``: ``i3d_pretrained_400.pt``, the Kinetics-400 RGB I3D converted from DeepMind's TF release
  into the piergiaj/pytorch-i3d layout, as distributed with VideoGPT (Google Drive id
  1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT) and loaded by the common PyTorch FVD code (VideoGPT, TATS, DIGAN, Open-Sora
  -Plan). Its sha256 could not be obtained offline when this entry was written, so it is **not pinned**: any file
  that loads into the network is accepted and its sha256 is recorded in every result. Pin it here once known.
* ``lpips_vgg``: the LPIPS v0.1 linear heads for VGG, ``lpips/weights/v0.1/vgg.pth`` of the lpips package 0.1.4
  (BSD-2-Clause), saved under a distinctive name; sha256 computed from the PyPI wheel lpips-0.1.4-py3-none-any.whl.
  An installed ``lpips`` package ships this very file: it is used (after the sha256 check) with no copy or rename.
"""

from __future__ import annotations

from v2vcli.weights import WeightsEntry

__all__ = ["EVAL_WEIGHTS", "I3D_URL", "LPIPS_VGG_URL", "LPIPS_VGG_SHA256"]

I3D_URL = ("https://huggingface.co/spaces/LanguageBind/Open-Sora-Plan-v1.0.0/resolve/"
           "810fa8c4bdb3a4c8eec9bd57375c29bde6fb46de/opensora/eval/fvd/videogpt/i3d_pretrained_400.pt")
LPIPS_VGG_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"
LPIPS_VGG_SHA256 = "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"

EVAL_WEIGHTS: tuple[WeightsEntry, ...] = (
    WeightsEntry("i3d_kinetics400", "i3d_pretrained_400.pt", sha256=None, url=I3D_URL, used_by="fvd, vfid_i3d",
                 source="VideoGPT's i3d_pretrained_400.pt (DeepMind kinetics-i3d RGB, Kinetics-400, converted to "
                        "the pytorch-i3d layout; Google Drive id 1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT); sha256 not "
                        "pinned (unknown offline): the file's hash is recorded in each result"),
    WeightsEntry("lpips_vgg", "lpips_vgg_v0.1.pth", sha256=LPIPS_VGG_SHA256, url=LPIPS_VGG_URL, used_by="lpips",
                 source="lpips 0.1.4 (BSD-2) lpips/weights/v0.1/vgg.pth: LPIPS linear heads for VGG16; an "
                        "installed lpips package's copy is used when its sha256 matches",
                 bundled=("lpips", "weights/v0.1/vgg.pth")),
)
