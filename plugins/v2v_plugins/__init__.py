"""v2v's built-in plugins. Each module is registered through the ``v2v`` entry-point group, like a third party's.

Plugin modules import only light modules at import time (no torch, cv2 or mediapipe) so ``v2v --help`` is fast.
"""
