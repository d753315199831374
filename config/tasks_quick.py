# A few-minute length-generalization grid (python compare.py config/tasks_quick.py): copy and passkey, every
# scheme, 2 seeds, a 2-layer model trained on n <= 5 for 400 steps, scored at n = 1 .. 15. Enough to see the
# tables and the plot; config/tasks_cpu.py is the comparison.

out_dir = "out/tasks_quick"
dataset = "task:copy,passkey"
task_n_train = 5
device = "cpu"
compile = False

n_layer = 2
n_head = 4
n_embd = 64
dropout = 0.0
bias = False

batch_size = 32
max_iters = 400
lr_decay_iters = 400
learning_rate = 3e-3
min_lr = 3e-4
warmup_iters = 40
beta2 = 0.99
eval_interval = 200
eval_iters = 5
log_interval = 100
sample_tokens = 0

schemes = "learned,sinusoidal,rope,xpos,alibi,t5,kerple,fire,cope,none"
n_seeds = 2
task_problems = 100
rope_methods = ""
