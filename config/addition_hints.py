# ALiBi learns addition in distribution (issue 26's in-distribution fix for the bias family): index hints
# (Zhou et al. 2024, task_hints: every digit follows a letter naming its significance, c0b4a2+c7b8a5=a7b2c8d0)
# make the digits to add findable by content, and a second layer gives each digit its hint (ALiBi's recency
# bias finds the token just before). config/addition.py's one layer cannot: ALiBi there, in any layout, has no
# way to single out a key 11 or 22 tokens back. Trained on 1 .. 10 digits, scored to 20 (2n); NoPE in these
# formats does not learn (docs/TASKS.md says why).
# python compare.py config/addition_hints.py --jobs=2

out_dir = "out/addition_hints"
dataset = "task:addition"
task_n_train = 10
task_n_eval = 20
device = "cpu"
compile = False

block = "llama"
n_layer = 2
n_head = 4
n_embd = 256
dropout = 0.0
bias = False

batch_size = 64
task_buckets = 4
max_iters = 1500
lr_decay_iters = 1500
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
beta2 = 0.95
weight_decay = 0.0
grad_clip = 1.0
eval_interval = 500
eval_iters = 10
log_interval = 100
sample_tokens = 0

schemes = "alibi:task_hints=true"
n_seeds = 2
task_problems = 200
rope_methods = ""
