# Addition that generalizes (issue 26): trained on 1 .. 10 digits, scored by exact match up to 30 (3n). The
# method: coupled position ids (Cho et al. 2024) on a one-layer RoPE model, with the operands written after
# an end mark and a zero (task_marks, ours: the answer's carry-out and end mark then have operand tokens at
# their ids), a learned attention sink and scalable softmax: >= 0.9 exact match at 2n on 7 of 9 seeds with
# these 3600 steps (1.00 on 6; 910 and 911 fail at 0.675 / 0.855, interior digits; 6 of 7 at 3000 steps;
# docs/TASKS.md). Width 256 and >= 3000 steps are both needed (128 wide or 2000 steps fail at 2n). The
# baselines (rope, none, learned, alibi) share the shape and do not learn 10 digits in distribution (1-3
# digits); the report marks them "not learned". 24.7 minutes with --jobs=2 on 2 cores (2026-12-07).
# python compare.py config/addition.py --jobs=2

out_dir = "out/addition"
dataset = "task:addition"
task_n_train = 10
task_n_eval = 30
device = "cpu"
compile = False

block = "llama"
n_layer = 1
n_head = 4
n_embd = 256
dropout = 0.0
bias = False

batch_size = 64
task_buckets = 4  # each batch in 4 groups of rows by size: the same gradient, ~35% less padding to compute
max_iters = 3600
lr_decay_iters = 3600
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
beta2 = 0.95
weight_decay = 0.0
grad_clip = 1.0
eval_interval = 1000
eval_iters = 10
log_interval = 100
sample_tokens = 0

schemes = (
    "rope:task_positions=coupled:task_marks=true:attn_sink=true:ssmax=true:random_positions=34,"
    "rope,none,learned,alibi"
)
n_seeds = 1
task_problems = 200
rope_methods = ""
