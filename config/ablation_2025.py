# The questions of 2025-2026 at the CPU size (config/ablation_cpu.py's model, data and evaluation): RoPE
# against learned sinks (gpt-oss), scalable softmax (SSMax), RoPE on sliding-window layers with NoPE on the
# global one (SSSL), FoX, stick-breaking attention, PoPE and DroPE (RoPE dropped at iter 800 of 1000, then
# recalibrated at L). 9 entries x 3 seeds, each entry at its own learning rate (3 rates, one tuning seed),
# loss to 8L plus the attention diagnostics; see docs/COMPARE.md for the numbers.
# python compare.py config/ablation_2025.py --jobs=2

out_dir = "out/ablation_2025"
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
    "rope,rope:attn_sink=true,rope:ssmax=true,none:ssmax=true,"
    "rope:window=16:window_pattern=SSSL:rope_nope_layers=[3],"
    "fox,stickbreaking,pope,rope:drope_iter=800"
)
n_seeds = 3
tune_lrs = "1e-3,2e-3,4e-3"
reference = "rope"
eval_lengths = "1,2,4,8"  # x block_size: 64 .. 512 tokens
eval_windows = 16
stride = 64
rope_methods = ""
finetune_iters = 0
