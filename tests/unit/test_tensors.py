"""Image tensors and the device: the uint8-to-model conversion."""

from __future__ import annotations

import pytest
import torch
from byol_discovery.tensors import to_model_input


def test_to_model_input_maps_uint8_to_minus_one_one() -> None:
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).reshape(1, 3, 1, 1)
    out = to_model_input(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([-1.0, 1.0, 51 / 127.5 - 1.0]))
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(x.float())
