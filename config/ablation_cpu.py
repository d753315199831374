# Positional-encoding ablation on a CPU: nanoGPT's baby Shakespeare-char model
# (config/shakespeare_char_cpu.py, block 64, 4 layers, 4 heads, 128 embd, batch 12, no dropout) trained
# with each of 9 schemes x 3 seeds (xpos is config/ablation_rope_family.py's),
# then evaluated at 1 .. 8x the training length. 1000 iterations instead of 2000 keep the grid (27 runs plus
# evaluation) under an hour on 2 cores (33.0 min with one thread, 2026-12-02; --jobs=2 runs two at a
# time); see docs/COMPARE.md for the numbers.
# python compare.py config/ablation_cpu.py

out_dir = "out/ablation_cpu"
dataset = "shakespeare"
tokenizer = "char"
device = "cpu"
compile = False

# model (pos_enc is set per grid entry)
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

# optimisation (as config/shakespeare_char_cpu.py, over 1000 iterations)
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

# training-time evaluation (fixed batches at L) and logging
eval_interval = 100
eval_iters = 20
log_interval = 50
sample_tokens = 0

# the grid, each entry at its own learning rate, and the extrapolation evaluation
schemes = "learned,sinusoidal,rope,alibi,none,t5,kerple,fire,cope"
n_seeds = 3
tune_lrs = "5e-4,1e-3,2e-3,4e-3,8e-3"  # every entry tried at each on a seed of its own (grid.py)
reference = "learned"
eval_lengths = "1,1.25,1.5,2,4,8"  # x block_size: 64 .. 512 tokens
eval_windows = 16  # 16 windows of 512 tokens: 8,192 validation tokens scored at every length
stride = 64  # sliding window: every token scored with at least T - 64 tokens of context
rope_methods = "linear,ntk,dynamic,yarn"
finetune_iters = 0  # e.g. 200: also fine-tune each rope run at 2L (Chen et al. 2023), ~+1 min per run
