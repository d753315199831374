# The RoPE family on a CPU (issue 13): which part of RoPE helps, and how it mixes with NoPE. The model and
# training of config/ablation_cpu.py (nanoGPT's baby Shakespeare-char model, L = 64, 1000 iterations), 3
# seeds, one grid entry per question:
#   rope                          the reference
#   rope:rope_fraction=0.75/0.5   p-RoPE (Barbero et al. 2024): only the fastest 75% / 50% of pairs rotate
#   rope:rope_nope_interval=2/4   NoPE in every 2nd / 4th layer (SmolLM3's pattern; Yang et al. 2025)
#   xpos                          RoPE with xPos' distance decay (Sun et al. 2022), scale_base 512
#   rope:qk_norm=true             QK-norm (nanochat) on rope ...
#   none:qk_norm=true             ... and on NoPE
#   rope:random_positions=512     randomized positions (Ruoss et al. 2023) from [0, 8L): train and evaluate
# python compare.py config/ablation_rope_family.py

out_dir = "out/ablation_rope_family"
dataset = "shakespeare"
tokenizer = "char"
device = "cpu"
compile = False

block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

batch_size = 12
gradient_accumulation_steps = 1
max_iters = 1000
lr_decay_iters = 1000
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
beta2 = 0.99
weight_decay = 1e-1
grad_clip = 1.0

eval_interval = 100
eval_iters = 20
log_interval = 50
sample_tokens = 0

schemes = (
    "rope,rope:rope_fraction=0.75,rope:rope_fraction=0.5,rope:rope_nope_interval=2,rope:rope_nope_interval=4,"
    "xpos,rope:qk_norm=true,none:qk_norm=true,rope:random_positions=512"
)
n_seeds = 3
eval_lengths = "1,1.25,1.5,2,4,8"
eval_windows = 16
stride = 64
rope_methods = ""  # the context-extension methods are config/ablation_cpu.py's question, not this grid's
