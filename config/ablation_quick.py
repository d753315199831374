# A one-minute positional-encoding ablation (python compare.py config/ablation_quick.py; 45 s on 2
# quiet cores): a 2-layer char model on Tiny Shakespeare, 9 schemes x 2 seeds x 300 iterations, evaluated at
# 1 .. 8x the training length. Enough to see the shape of every table and plot; the numbers are far from
# converged (see config/ablation_cpu.py).

out_dir = "out/ablation_quick"
dataset = "shakespeare"
tokenizer = "char"
device = "cpu"
compile = False

block_size = 32
n_layer = 2
n_head = 4
n_embd = 64
dropout = 0.0
bias = False

batch_size = 12
max_iters = 300
lr_decay_iters = 300
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 30
beta2 = 0.99
eval_interval = 50
eval_iters = 10
log_interval = 50
sample_tokens = 0

schemes = "learned,sinusoidal,rope,alibi,none,t5,kerple,fire,cope"
n_seeds = 2
eval_lengths = "1,1.25,1.5,2,4,8"
eval_windows = 16
stride = 32
rope_methods = "linear,ntk,dynamic,yarn"
