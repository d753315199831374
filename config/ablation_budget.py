# Is the ranking at L a convergence-speed effect? config/ablation_cpu.py's model, data and evaluation with
# learned, rope and alibi trained for 1x, 2x and 4x that preset's 1000 iterations (each budget its own run,
# the learning rate decayed over it), 2 seeds, each scheme at the rate config/ablation_cpu.py's tuning chose
# for it at 1000 iterations (docs/COMPARE.md). About 30 minutes with --jobs=2 on 2 cores.
# python compare.py config/ablation_budget.py --jobs=2

out_dir = "out/ablation_budget"
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
learning_rate = 1e-3  # every entry sets its own
min_lr = 1e-4
warmup_iters = 100
beta2 = 0.99
weight_decay = 1e-1
grad_clip = 1.0

eval_interval = 250
eval_iters = 20
log_interval = 250
sample_tokens = 0

schemes = "learned:learning_rate=4e-3,rope:learning_rate=2e-3,alibi:learning_rate=4e-3"
budgets = "1000,2000,4000"
n_seeds = 2
reference = "learned:learning_rate=4e-3"
eval_lengths = "1,2,4,8"  # x block_size: 64 .. 512 tokens
eval_windows = 16
stride = 64
rope_methods = ""
finetune_iters = 0
