# A quick length-generalization grid (python compare.py config/tasks_quick.py --jobs=2): copy and passkey, one
# scheme per family (learned absolute, rope, alibi, NoPE), 2 seeds, trained on n <= 5 and scored at
# n = 1 .. 15. The model and steps of config/tasks_cpu.py (4 layers, 128 wide, 1000 steps of 32 problems):
# smaller models or fewer steps learned the tasks on some seeds and not on others (docs/TASKS.md), so the
# preset trades schemes, not steps, for time. config/tasks_cpu.py is the comparison of every scheme.

out_dir = "out/tasks_quick"
dataset = "task:copy,passkey"
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

schemes = "learned,rope,alibi,none"
n_seeds = 2
task_problems = 100
rope_methods = ""
