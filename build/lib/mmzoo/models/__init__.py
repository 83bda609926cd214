"""``nn.Module`` compositions of parts: the dual encoder (CLIP-style) and the
vision-to-language model (LLaVA / MiniGPT-4 / BLIP-2 stage 2 style)."""
