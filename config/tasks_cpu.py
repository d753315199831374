# Length generalization on a CPU: every scheme trained on problems of size n <= 5 and scored by exact match
# at n = 1 .. 15 (3x), 3 seeds, 3 tasks, one grid each in out/tasks_cpu/<task>/. A 4-layer, 128-wide model,
# 1000 steps of 32 problems. Addition is not here: no plain scheme learns it in distribution at this
# budget (docs/TASKS.md). With --jobs=2 on 2 cores: about 26 minutes (measured 2026-12-02).
# python compare.py config/tasks_cpu.py --jobs=2

out_dir = "out/tasks_cpu"
dataset = "task:copy,reverse,passkey"
task_n_train = 5
device = "cpu"
compile = False

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

batch_size = 32
max_iters = 1000
lr_decay_iters = 1000
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 100
beta2 = 0.99
weight_decay = 0.1
grad_clip = 1.0
eval_interval = 250
eval_iters = 10
log_interval = 100
sample_tokens = 0

schemes = "learned,sinusoidal,rope,xpos,alibi,t5,kerple,fire,cope,none"
n_seeds = 3
task_problems = 200
rope_methods = ""
