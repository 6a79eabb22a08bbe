"""timm's ``Mlp`` with fc1 and its GELU fused for fp32 inference on CPU (oneDNN, see
``variants._linear``): one pass writes the hidden map instead of a GEMM and then a GELU over it.

Same modules, parameters and state dict as timm's ``Mlp``; training and every other case run
timm's op-by-op forward. No ``from __future__ import annotations``: TorchScript compiles it.
"""

import torch
from timm.layers import Mlp as TimmMlp
from timm.layers import register_notrace_module
from torch import Tensor, nn

from variants._linear import Linear, onednn_applies, onednn_linear

# the forward picks its path at run time, which an FX trace would freeze to the op-by-op one
# (and then differ from eager in round-off): timm's FX feature extraction keeps both whole
register_notrace_module(Linear)


@register_notrace_module
class Mlp(TimmMlp):
    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__(in_features, hidden_features, act_layer=nn.GELU)
        # the same parameters, no new draws from the RNG: only the forward changes
        self.fc1.__class__ = Linear
        self.fc2.__class__ = Linear

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting() and onednn_applies(x):
            x = onednn_linear(x, self.fc1.weight, self.fc1.bias, gelu=True)
        else:
            x = self.act(self.fc1(x))
        return self.drop2(self.fc2(self.norm(self.drop1(x))))
