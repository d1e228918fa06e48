"""torch -> ONNX export, spiking export, fp16 and hardware-profile prechecks (issue 3)."""
