# Length generalization on a CPU (issue 14): every scheme trained on problems of size n <= 5 and scored by
# exact match at n = 1 .. 15 (3x), 3 seeds, 4 tasks, one grid each in out/tasks_cpu/<task>/. A 4-layer,
# 128-wide model, 1000 steps of 32 problems; addition (n <= 3, 9 evaluated) gets 2500 steps of 64,
# because it is learned far more slowly (docs/LOG.md). With --jobs=2 on 2 cores: about an hour.
# python compare.py config/tasks_cpu.py --jobs=2

out_dir = "out/tasks_cpu"
dataset = "task:copy,reverse,passkey,addition"
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
task_overrides = {
    "addition": {"task_n_train": 3, "max_iters": 2500, "lr_decay_iters": 2500, "batch_size": 64},
}
rope_methods = ""
