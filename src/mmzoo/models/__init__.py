"""``nn.Module`` compositions of parts: the dual encoder (CLIP-style), the vision-to-language
model (LLaVA / MiniGPT-4 / BLIP-2 stage 2 / InstructBLIP), BLIP, and BLIP-2 stage 1."""
