"""Batch samplers with feedback for adaptive data sampling, usable in three lines of a plain PyTorch loop.

    from sketch.samplers import NWSSampler
    sampler = NWSSampler.from_features(features, batch_size=512, labels=Y, seed=0)   # the tuned defaults
    for epoch in range(E):
        sampler.set_epoch(epoch)
        for idx in sampler:                                  # LongTensor [B] on the sampler's device
            loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
            (sampler.weights(idx) * loss).mean().backward(); opt.step(); opt.zero_grad()
            sampler.update(idx, loss.detach())

Samplers (each a `torch.utils.data.Sampler[torch.Tensor]` yielding `len(sampler)` batches per epoch; the
`cost` attribute says what one step costs):
  uniform    UniformSampler     random permutation per epoch, weights 1
  static     StaticSampler      fixed scores known before training
  loss       LossSampler        exact current losses of a uniform candidate pool (forward passes)
  history    HistorySampler     each sample's last observed loss
  infobatch  InfoBatchSampler   InfoBatch pruning of well-learned samples, fixed-length epochs
  nws        NWSSampler         the Nadaraya-Watson sketch's loss estimates, drawn from its buckets (the paper's method)
  nws_full   NWSFullSampler     the same estimates of every item (or of a pool), sampled in proportion
  stream_filter       StreamFilterSampler        the paper lineage's one-pass filter: keep high estimated losses
  selective_backprop  SelectiveBackpropSampler   Selective-Backprop: keep by the percentile of the forward loss

Each class registers itself with `@register(name, inputs=(...))` (its runtime inputs, from `INPUTS`); build by
name with `build_sampler(name, **kwargs)`; `SAMPLERS` maps names to classes. The shared contract
(determinism, weights, update, probabilities, state_dict, data parallel) is documented on `FeedbackSampler`.
"""
from ._base import FeedbackSampler
from ._proportional import MULTINOMIAL_MAX_CATEGORIES, ProportionalSampler, draw_categorical, inverse_cdf_draw, mix_probabilities
from ._registry import INPUTS, SAMPLERS, build_sampler, register, sketch_defaults
# The samplers, in the order SAMPLERS lists them (each registers itself where it is written).
from ._uniform import UniformSampler  # isort: skip
from ._static import StaticSampler  # isort: skip
from ._loss import LossSampler  # isort: skip
from ._history import HistorySampler  # isort: skip
from ._infobatch import InfoBatchSampler  # isort: skip
from ._nws_base import NWSBase  # isort: skip
from ._nws import NWSSampler, features_to_slots  # isort: skip
from ._nws_full import NWSFullSampler  # isort: skip
from ._stream_filter import StreamFilterSampler  # isort: skip
from ._selective_backprop import SelectiveBackpropSampler  # isort: skip

__all__ = [
    "FeedbackSampler",
    "ProportionalSampler",
    "mix_probabilities",
    "draw_categorical",
    "inverse_cdf_draw",
    "MULTINOMIAL_MAX_CATEGORIES",
    "UniformSampler",
    "StaticSampler",
    "LossSampler",
    "HistorySampler",
    "InfoBatchSampler",
    "NWSBase",
    "NWSSampler",
    "NWSFullSampler",
    "features_to_slots",
    "StreamFilterSampler",
    "SelectiveBackpropSampler",
    "SAMPLERS",
    "INPUTS",
    "register",
    "build_sampler",
    "sketch_defaults",
]
