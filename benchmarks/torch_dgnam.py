"""A plain PyTorch DGN-AM reference: Caffe nets from a :class:`NetDef`, one neuron at a time.

This is the baseline ``benchmarks/bench_engine.py`` measures the batched JAX engine against: the
way PyTorch activation-maximisation code is usually written (one code, a Python loop over
iterations, autograd per step). Weights come from the JAX parameter trees through
``dgnam_jax.nets.convert.flax_to_caffe``; Caffe blob layouts are PyTorch's (conv ``(O, I/g, kh, kw)``,
deconv ``(C_in, C_out/g, kh, kw)`` = ``ConvTranspose2d.weight``, InnerProduct ``(O, K)`` over a
(C, H, W) flatten), so loading is a copy.

Supported layer types are those of CaffeNet and the DeePSim generators (and the benchmark's
smaller stand-ins): Input, Convolution, Deconvolution, InnerProduct, ReLU (leaky), Pooling (MAX,
Caffe ceil mode), LRN (across channels), Reshape, Dropout, Softmax, Split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dgnam_jax.caffe import netdef as nd


def _key(name: str) -> str:
  """ModuleDict keys may not contain '.', and Caffe names may contain '/'."""
  return name.replace('.', '_').replace('/', '__')


class TorchCaffeNet(nn.Module):
  """Runs a Caffe deploy net (TEST phase) in PyTorch, NCHW, float32.

  Attributes:
    netdef: the parsed net.
  """

  def __init__(self, netdef: nd.NetDef):
    super().__init__()
    self.netdef = netdef
    self.mods = nn.ModuleDict()
    channels = {name: shape[1] for name, shape in netdef.inputs if len(shape) > 1}
    for layer in netdef.layers:
      p = layer.param
      if layer.type in ('Convolution', 'Deconvolution'):
        cin = channels[layer.bottoms[0]]
        cls = nn.Conv2d if layer.type == 'Convolution' else nn.ConvTranspose2d
        self.mods[_key(layer.name)] = cls(cin, p.num_output, p.kernel, p.stride, p.pad,
                                          dilation=p.dilation, groups=p.group, bias=p.bias_term)
      elif layer.type == 'InnerProduct':
        # The input width is only known after a forward pass; LazyLinear would make loading
        # order-dependent, so widths are taken from the weights in `load_caffe_blobs` instead.
        self.mods[_key(layer.name)] = _LinearSlot(p.num_output, p.bias_term)
      elif layer.type not in _STATELESS and layer.type not in ('Input', 'Split'):
        raise ValueError(f'layer {layer.name!r}: type {layer.type} is not supported here')
      for top in layer.tops:  # channel counts, for the input width of later convolutions
        if layer.type in ('Convolution', 'Deconvolution', 'InnerProduct'):
          channels[top] = p.num_output
        elif layer.type == 'Reshape' and len(p.shape) == 4:
          channels[top] = p.shape[1]
        elif layer.bottoms and layer.bottoms[0] in channels:
          channels.setdefault(top, channels[layer.bottoms[0]])

  def forward(self, x: torch.Tensor, end: str | None = None
              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Returns (blobs, layer outputs) like ``dgnam_jax.nets.NetOutputs``; stops after ``end``."""
    (name, _), = self.netdef.inputs
    blobs: dict[str, torch.Tensor] = {name: x}
    outs: dict[str, torch.Tensor] = {}
    for layer in self.netdef.layers:
      if layer.type == 'Input':
        continue
      xs = [blobs[b] for b in layer.bottoms]
      if _key(layer.name) in self.mods:
        y = self.mods[_key(layer.name)](xs[0])
      elif layer.type == 'Split':
        y = xs[0]
      else:
        y = _STATELESS[layer.type](xs[0], layer.param)
      for top in layer.tops:
        blobs[top] = y
      outs[layer.name] = y
      if layer.name == end:
        break
    return blobs, outs


class _LinearSlot(nn.Module):
  """Caffe InnerProduct: flattens (C, H, W) like Caffe, then ``F.linear``."""

  def __init__(self, features: int, bias: bool):
    super().__init__()
    self.weight = nn.Parameter(torch.empty(features, 0), requires_grad=False)
    self.bias = nn.Parameter(torch.empty(features), requires_grad=False) if bias else None

  def forward(self, x):
    return F.linear(x.flatten(1), self.weight, self.bias)


def _max_pool(x, p: nd.PoolingParam):
  if p.pool != 'MAX' or p.global_pooling:
    raise ValueError(f'only MAX pooling is supported here, got {p}')
  # Caffe rounds up and clips the last window to the image: PyTorch's ceil_mode does both.
  return F.max_pool2d(x, p.kernel, p.stride, p.pad, ceil_mode=p.round_mode == 'CEIL')


def _lrn(x, p: nd.LRNParam):
  if p.norm_region != 'ACROSS_CHANNELS':
    raise ValueError('only ACROSS_CHANNELS LRN is supported here')
  # Both divide alpha by local_size: x / (k + alpha/n * sum x^2)^beta.
  return F.local_response_norm(x, p.local_size, p.alpha, p.beta, p.k)


def _reshape(x, p: nd.ReshapeParam):
  if p.axis != 0 or p.num_axes != -1:
    raise ValueError('only whole-blob Reshape is supported here')
  # As the JAX nets do: a hard-coded leading dim (DeePSim's 1) follows the bottom's batch.
  shape = [x.shape[0]] + [x.shape[i] if d == 0 else d for i, d in enumerate(p.shape) if i > 0]
  return x.reshape(shape)


_STATELESS = {
    'ReLU': lambda x, p: F.leaky_relu(x, p.negative_slope) if p.negative_slope else F.relu(x),
    'Pooling': _max_pool,
    'LRN': _lrn,
    'Reshape': _reshape,
    'Dropout': lambda x, p: x,
    'Softmax': lambda x, p: F.softmax(x, dim=p.axis),
}


def load_caffe_blobs(net: TorchCaffeNet, blobs: Mapping[str, Sequence[np.ndarray]]) -> None:
  """Copies Caffe blobs (layer name -> [weight, bias]) into ``net``; freezes every parameter."""
  for layer in net.netdef.layers:
    key = _key(layer.name)
    if key not in net.mods:
      continue
    mod, layer_blobs = net.mods[key], blobs[layer.name]
    weight = torch.tensor(np.asarray(layer_blobs[0], np.float32))
    if isinstance(mod, _LinearSlot):
      mod.weight = nn.Parameter(weight, requires_grad=False)
    else:
      if tuple(mod.weight.shape) != tuple(weight.shape):
        raise ValueError(f'layer {layer.name!r}: blob {tuple(weight.shape)} does not fit '
                         f'{tuple(mod.weight.shape)}')
      mod.weight.data.copy_(weight)
    if mod.bias is not None:
      mod.bias.data.copy_(torch.tensor(np.asarray(layer_blobs[1], np.float32)))
  # Frozen weights: autograd then builds only the input-gradient path, as JAX's grad does.
  net.requires_grad_(False)
  net.eval()


def dgnam_neuron(generator: TorchCaffeNet, classifier: TorchCaffeNet, code: torch.Tensor,
                 unit: int, layer: str, iters: int, crop: tuple[int, int, int, int],
                 lr: float = 8.0, lr_end: float = 1e-10, l2: float = 0.99,
                 lower: float | torch.Tensor = 0.0, upper: float | torch.Tensor = float('inf'),
                 output_blob: str = 'deconv0') -> tuple[torch.Tensor, torch.Tensor, float]:
  """DGN-AM for ONE fc unit: ``iters`` steps of the authors' update (``original.md`` §2.4).

  ``h += lr_i * d / mean|d|`` with ``d = d a_unit(crop(G(h))) / d h`` (the original's two
  normalised backward passes collapse to this), then clip to [lower, upper] and multiply by L2.

  Args:
    generator, classifier: the nets (weights loaded and frozen).
    code: (1, *code) initial code.
    unit: fc unit index in ``layer``.
    layer: classifier layer whose raw output is maximised (e.g. 'fc8').
    iters: number of iterations.
    crop: (y, x, height, width) of the classifier input inside the generator's image.
    lr, lr_end, l2, lower, upper: the step settings (the original's CaffeNet defaults).
    output_blob: the generator blob holding the image.

  Returns:
    (final code, last drawn image (1, 3, height, width), its activation).
  """
  oy, ox, th, tw = crop
  h = code.detach().clone()
  act, image = torch.zeros(()), None
  for i in range(iters):
    lr_i = lr + (lr_end - lr) * i / iters
    h.requires_grad_(True)
    image = generator(h)[0][output_blob][:, :, oy:oy + th, ox:ox + tw]
    act = classifier(image, end=layer)[1][layer][0, unit]
    (d,) = torch.autograd.grad(act, h)
    with torch.no_grad():
      # A zero gradient gives a zero step; clamp_min avoids a host sync on accelerators.
      h = h.detach() + lr_i * d / d.abs().mean().clamp_min(1e-30)
      h = torch.clamp(h, lower, upper) * l2
  return h, image.detach(), float(act.detach())


def dgnam_batch(generator: TorchCaffeNet, classifier: TorchCaffeNet, codes: torch.Tensor,
                units: Sequence[int], layer: str, iters: int, crop: tuple[int, int, int, int],
                lr: float = 8.0, lr_end: float = 1e-10, l2: float = 0.99,
                lower: float | torch.Tensor = 0.0, upper: float | torch.Tensor = float('inf'),
                output_blob: str = 'deconv0') -> torch.Tensor:
  """:func:`dgnam_neuron` for N fc units at once (one batched forward and backward per step).

  The rows never mix: the nets are per-sample (no batch statistics), the gradient of the summed
  activations is each row's own, and each row's step is normalised by its own mean |d|.
  Returns the (N, *code) final codes.
  """
  oy, ox, th, tw = crop
  h = codes.detach().clone()
  rows = torch.arange(h.shape[0], device=h.device)
  units_t = torch.as_tensor(list(units), device=h.device)
  for i in range(iters):
    lr_i = lr + (lr_end - lr) * i / iters
    h.requires_grad_(True)
    image = generator(h)[0][output_blob][:, :, oy:oy + th, ox:ox + tw]
    act = classifier(image, end=layer)[1][layer][rows, units_t]
    (d,) = torch.autograd.grad(act.sum(), h)
    with torch.no_grad():
      scale = d.abs().flatten(1).mean(1).clamp_min(1e-30).view(-1, *([1] * (d.dim() - 1)))
      h = h.detach() + lr_i * d / scale
      h = torch.clamp(h, lower, upper) * l2
  return h
