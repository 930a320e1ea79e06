"""DeePSim's discriminator and its D/G balancing rule (used by :mod:`.generator`)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from dgnam_jax.nets import modules


class Discriminator(nn.Module):
  """D(image, code) -> one logit (real vs generated), conditioned on the code.

  The image path is four strided convolutions and a global mean (DeePSim's D ends in an average
  pool too); the code path two fc layers, as the third-party DeePSim ports give for the original's
  feature branch; both meet in two fc layers. Leaky ReLUs (0.2) and no dropout. Channels
  16-32-64-128: with 32-256 D cost more than G and the comparator together on the CPU (a pilot ran
  at 22 img/s on one core) and it still won most rounds.
  """
  image_size: int = 32
  input_div: float = 64.0

  @nn.compact
  def __call__(self, img, code):
    act = functools.partial(nn.leaky_relu, negative_slope=0.2)
    x = img / self.input_div
    s1 = max(1, self.image_size // 32)
    for i, (feats, k, s) in enumerate(((16, 3, s1), (32, 4, 2), (64, 4, 2), (128, 4, 2))):
      pad = (k - 1) // 2 if s == 1 else 1
      x = act(modules.Conv(feats, (k, k), (s, s), (pad, pad), fast_weight_grad=True,
                           name=f'Dconv{i + 1}')(x))
    x = x.mean(axis=(1, 2))
    c = act(nn.Dense(512)(code))
    c = act(nn.Dense(256)(c))
    y = act(nn.Dense(512)(jnp.concatenate([x, c], axis=-1)))
    return nn.Dense(1)(y)[:, 0]


def balance_gates(d_loss, g_adv_loss, train_d):
  """DeePSim's D/G balancing: (train D, train G) from ``r = L_D / L_G_adv``.

  D stops when ``r < 0.1`` (it is winning) and resumes when ``r > 0.5``; in between it keeps its
  previous state (``train_d``). G pauses while ``r > 10`` (D is losing badly).
  """
  ratio = d_loss / (g_adv_loss + 1e-8)
  train_d = jnp.where(ratio < 0.1, False, jnp.where(ratio > 0.5, True, train_d))
  return train_d, ratio <= 10.0
