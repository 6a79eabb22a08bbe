"""timm's ``Mlp`` with two fast paths: fc1 and its GELU fused for fp32 inference on CPU (oneDNN,
see ``variants._linear``), one pass writing the hidden map instead of a GEMM and then a GELU
over it, in row chunks where the whole hidden map would be mapped fresh
(``variants._inference_chunks``); and in training, GELU and fc2 keeping only GELU's input for
backward (``harness.light_mlp``), not its output as well, in fp32 with oneDNN fc1, GELU and fc2
as one autograd function whose fused GELU pass also gives fc1's bias gradient.

Same modules, parameters and state dict as timm's ``Mlp``; every other case runs timm's op-by-op
forward. No ``from __future__ import annotations``: TorchScript compiles it.
"""

import torch
from timm.layers import Mlp as TimmMlp
from timm.layers import register_notrace_module
from torch import Tensor, nn

from harness.light_mlp import GeluLinear, LightMlp
from variants._inference_chunks import chunked, rows_per_chunk
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
        if not torch.jit.is_scripting():
            if onednn_applies(x):
                return self._inference(x)
            if self._light_backward():
                if LightMlp.applies(x, self.fc1.out_features):
                    fc1, fc2 = self.fc1, self.fc2
                    return self.drop2(LightMlp.apply(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias))
                return self.drop2(self._gelu_fc2(self.fc1(x)))
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))

    @torch.jit.unused
    def _inference(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        rows = rows_per_chunk(flat.shape[0], flat.element_size() * self.fc1.out_features)
        if rows is None:
            return self._onednn_forward(x)
        return chunked(self._onednn_forward, flat, rows).view(*x.shape[:-1], -1)

    @torch.jit.unused
    def _onednn_forward(self, x: Tensor) -> Tensor:
        x = onednn_linear(x, self.fc1.weight, self.fc1.bias, gelu=True, packed=True)
        return self.drop2(self.fc2(self.norm(self.drop1(x))))

    @torch.jit.unused
    def _light_backward(self) -> bool:
        """Under autograd, with nothing between GELU and fc2 (no dropout, no norm)."""
        return (
            torch.is_grad_enabled()
            and not (self.training and self.drop1.p > 0)
            and isinstance(self.norm, nn.Identity)
            and self.act.approximate == "none"
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            and not torch.compiler.is_exporting()
        )

    @torch.jit.unused
    def _gelu_fc2(self, h: Tensor) -> Tensor:
        return GeluLinear.apply(h, self.fc2.weight, self.fc2.bias)
