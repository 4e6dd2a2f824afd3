"""nws-bench sketch core: LSH families, the Nadaraya-Watson sketch, its exact reference, and samplers.

Pure PyTorch (no Hydra, no W&B); runs on whatever device its inputs are on.

    from sketch import SRPHash, NWSketch
    sk = NWSketch(SRPHash(dim=d, depth=16, bits=4, seed=0), width=1024)
    sk.update(x, losses); sk.estimate(x)
    keys = feature_keys(x_raw)                      # centred hash keys: what SRP should see
    bits = suggest_bits(num_samples=len(x_raw))     # ~16 training items per code
"""
from ._exact import GaussianKernel, nadaraya_watson
from ._hashes import LSHFamily, PStableHash, SRPHash, make_hash
from ._keys import feature_keys
from ._shape import SHAPE_CHECKS, check_sketch_options, shape_defaults
from ._sizing import suggest_bits, suggest_depth, suggest_width
from ._sketch import NWSketch
from . import samplers
from .samplers import *  # noqa: F403  (the samplers, listed once in sketch.samplers.__all__)

__all__ = ["LSHFamily", "SRPHash", "PStableHash", "make_hash", "NWSketch", "nadaraya_watson", "GaussianKernel",
           "feature_keys", "SHAPE_CHECKS", "check_sketch_options", "shape_defaults", "suggest_bits", "suggest_depth", "suggest_width", *samplers.__all__]
